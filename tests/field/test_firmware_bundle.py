"""The flashable bundle: every firmware module compiles with mpy-cross and runs from .mpy."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from urbanpulse.devtools.hostboard import board_argv, board_env
from urbanpulse.field.bundle import (
    ENTRY_FILES,
    ROM_IMAGE,
    BundleError,
    build_bundle,
    firmware_source,
    micropython_binary,
)


def test_every_firmware_module_compiles_and_the_bundle_has_no_source(tmp_path: Path) -> None:
    source = firmware_source()
    bundle = build_bundle(tmp_path / "bundle")
    modules = sorted(p.relative_to(source).with_suffix(".mpy")
                     for p in (source / "urbanpulse_fw").rglob("*.py"))
    assert modules, "no firmware modules found"
    built = sorted(p.relative_to(bundle) for p in bundle.rglob("*.mpy"))
    assert built == modules
    assert sorted(p.name for p in bundle.glob("*.py")) == sorted(ENTRY_FILES)
    assert not list((bundle / "urbanpulse_fw").rglob("*.py"))  # only bytecode is flashed
    assert not (bundle / "host").exists()  # PC stand-ins never go to a board


def test_bundle_imports_under_micropython_in_a_board_sized_heap(tmp_path: Path) -> None:
    bundle = build_bundle(tmp_path / "bundle", host=True)
    probe = ("import gc; import urbanpulse_fw.mqtt, urbanpulse_fw.telemetry, urbanpulse_fw.app;"
             " gc.collect(); print('free', gc.mem_free())")
    result = subprocess.run(
        [micropython_binary(), "-X", "heapsize=64k", "-c", probe],
        cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False,
        env={"MICROPYPATH": f"{bundle / 'host'}:{bundle}:.frozen"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    free = int(result.stdout.split("free")[1])
    assert free > 20_000, f"only {free} bytes of a 64 KiB heap left after import"


FREE = "import gc; gc.collect(); print('free', gc.mem_free())"


def test_a_host_board_has_64_kib_for_its_data_beside_its_rom_image(tmp_path: Path) -> None:
    """The ROMFS image a host board runs from is extra: what is free once it is mounted (and
    boot.py ran, as on a board) is what a plain 64 KiB interpreter has free after boot.py; the
    main loop's modules then take about 22 KiB of it (40 KiB when their code is loaded from
    files)."""
    bundle = build_bundle(tmp_path / "bundle", host=True)
    assert (bundle / ROM_IMAGE).stat().st_size > 20_000
    board = tmp_path / "board"
    board.mkdir()
    env = board_env(bundle, board)

    def free(argv: list[str]) -> int:
        result = subprocess.run(argv, cwd=board, env=env, capture_output=True, text=True,
                                timeout=30, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        return int(result.stdout.split("free")[-1])

    (board / "boot.py").write_text((bundle / "boot.py").read_text())
    plain = free([micropython_binary(), "-X", "heapsize=64k", "-c",
                  "import sys, boot; del sys.modules['boot']; " + FREE])
    (board / "boot.py").unlink()
    (board / "probe.py").write_text(FREE)
    rom = free(board_argv(micropython_binary(), "64k", bundle, "probe"))
    assert abs(rom - plain) <= 256, (rom, plain)
    # The main loop's modules, run in place from the image.
    (board / "loaded.py").write_text(
        "import sys; from urbanpulse_fw import mqtt, telemetry, uplink, mainloop\n"
        "assert mqtt.__file__.startswith('/rom/'), mqtt.__file__\n" + FREE)
    loaded = free(board_argv(micropython_binary(), "64k", bundle, "loaded"))
    assert rom - loaded < 30_000, f"the main loop's modules took {rom - loaded} bytes of RAM"


def test_syntax_error_names_the_file(tmp_path: Path) -> None:
    source = tmp_path / "firmware"
    (source / "urbanpulse_fw").mkdir(parents=True)
    for name in ENTRY_FILES:
        (source / name).write_text("\n")
    (source / "urbanpulse_fw" / "broken.py").write_text("def f(:\n")
    with pytest.raises(BundleError, match=r"mpy-cross failed on .*broken\.py"):
        build_bundle(tmp_path / "out", source=source)
