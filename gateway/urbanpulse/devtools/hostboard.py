"""The firmware run on this PC as a simulated board: its environment, its process, its stop.

The fleet, the tests and the benchmarks all start host boards here, so that every one of them
is stopped the same safe way.

Why not SIGINT: on a board, Ctrl-C on the serial REPL is raised at the next bytecode boundary.
The unix port raises KeyboardInterrupt straight from its SIGINT handler, wherever the C code
is. A SIGINT that lands inside a garbage collection leaves the heap locked for good: every
later allocation fails with "memory allocation failed, heap is locked", and the clean stop
cannot even print. Instead the board's stdin is a non-blocking pipe. Closing it is the host's
Ctrl-C, and the firmware's stand-in for ``network`` (firmware/host/network.py) raises
KeyboardInterrupt at a safe point, in the call the main loop makes on every pass.
"""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path
from typing import IO

from urbanpulse.field.bundle import HOST_STANDINS, ROM_IMAGE

# In a host board's folder: a link to the bundle (board_env), through which the board's
# stand-in for a ROMFS partition (firmware/host/hostrom.py) finds the image.
BOARD_LINK = ".fw"
# What a host board runs: the ROMFS mount a board's MicroPython makes before anything else,
# then main.py from the image (boot.py is a board's, a console greeting).
MAIN = "main"
# The GC heap's pool is this much smaller than the heap MicroPython is given (its block
# tables); measured on the unix port (1.29: 65536 -> 64768 bytes of pool).
_POOL_SHARE = 64.0 / 64.75
# Besides the image: its bytearray's header, the VfsRom object, the mount and hostrom's own
# code, which a board's C code keeps out of the heap.
_MOUNT_BYTES = 768  # measured: rom and plain boards within 32 bytes (1.29)
# Updates over the air, in a board's folder (firmware/urbanpulse_fw/ota.py), and the share of
# their .mpy files' size that the modules a board loads take in its heap (measured, 1.29: a
# streetlight's loaded code took 22.6 KB of the 62 KB of files; half leaves room for
# the drivers of other kinds).
UPDATE_SLOTS = ("ota/a", "ota/b")
_LOADED_CODE_SHARE = 0.5
# Tells the firmware's stand-in for `network` that stdin is the stop pipe (see launch()).
STOP_VARIABLE = "URBANPULSE_HOST_STOP"


def ram_bytes(heap: str) -> int:
    """A heap size as MicroPython's -X heapsize takes it ("64k", "65536") in bytes."""
    units = {"k": 1024, "m": 1024 * 1024}
    text = heap.strip().lower()
    if text[-1:] in units:
        return int(text[:-1]) * units[text[-1]]
    return int(text)


def rom_bytes(bundle: Path) -> int:
    """What the ROMFS image of ``bundle`` (build_bundle(host=True)) and its mount take of a
    host board's heap: not the board's RAM (a board maps the image from flash)."""
    image = (bundle / ROM_IMAGE).stat().st_size
    return (image + 15) // 16 * 16 + _MOUNT_BYTES


def update_code_bytes(folder: Path | None) -> int:
    """What the code of an update installed over the air (ota/a, ota/b in the board's folder)
    takes of a host board's heap: the board loads it from its filesystem into RAM, where the
    flashed firmware is mapped from its ROMFS image. A share of the larger slot's files."""
    if folder is None:
        return 0
    slots = [sum(p.stat().st_size for p in (folder / slot).rglob("*.mpy"))
             for slot in UPDATE_SLOTS if (folder / slot).is_dir()]
    return math.ceil(max(slots, default=0) * _LOADED_CODE_SHARE)


def heap_size(ram: str, bundle: Path, folder: Path | None = None) -> int:
    """The heap to give a host board with ``ram`` of RAM: that much left for the firmware
    once its ROMFS image fills the front of the heap (and an update's code, if it has one)."""
    code = rom_bytes(bundle) + update_code_bytes(folder)
    return ram_bytes(ram) + math.ceil(code / _POOL_SHARE)


def board_argv(micropython: str, ram: str, bundle: Path, module: str = MAIN,
               folder: Path | None = None) -> list[str]:
    """The command that starts a host board with ``ram`` of RAM (in its ``folder``,
    board_env): ``module`` is main.py, or a bench's script in the board's folder."""
    return [micropython, "-X", f"heapsize={heap_size(ram, bundle, folder)}", "-c",
            f"import hostrom, {module}"]


def board_env(bundle: Path, folder: Path) -> dict[str, str]:
    """The environment to run ``micropython`` in a host board's ``folder`` (its cwd) with
    ``bundle`` (build_bundle(host=True)): the stand-ins for ESP32-only modules first, then the
    firmware, reached through a short relative link (BOARD_LINK) in the folder."""
    link = folder / BOARD_LINK
    if link.is_symlink() and link.resolve() != bundle.resolve():
        link.unlink()  # a folder reused with another bundle
    if not link.is_symlink():
        link.symlink_to(bundle.resolve(), target_is_directory=True)
    env = dict(os.environ)
    env["MICROPYPATH"] = f"{BOARD_LINK}/{HOST_STANDINS}:{BOARD_LINK}:.frozen"
    return env


def launch(argv: list[str], folder: Path, env: dict[str, str],
           console: IO[bytes] | int | None) -> subprocess.Popen[bytes]:
    """Start a host board: ``argv`` (micropython and its main.py) in ``folder``.

    Its stdin is the stop pipe (see stop()), non-blocking so that the board can look at it
    without waiting or allocating. Its own session: a Ctrl-C typed at the terminal goes to
    the fleet's owner, which then stops each board the safe way.
    """
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    try:
        process = subprocess.Popen(argv, cwd=folder, env=dict(env, **{STOP_VARIABLE: "1"}),
                                   stdin=read_end, stdout=console, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    process.stdin = open(write_end, "wb", buffering=0)  # noqa: SIM115 (stop() closes it)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    """Ask a host board to stop cleanly, as Ctrl-C does on a board's REPL: it says offline,
    keeps what is unsent in flash and exits. Returns at once; wait() on the process."""
    if process.stdin is not None:
        process.stdin.close()
