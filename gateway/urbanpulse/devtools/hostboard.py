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

import os
import subprocess
from pathlib import Path
from typing import IO

from urbanpulse.field.bundle import HOST_STANDINS

# In a host board's folder: a link to the bundle, so that module paths are as short as on a
# board (each module's path is interned for good; a temporary folder's long one costs heap).
BOARD_LINK = ".fw"
# The script a host board runs, through the link: MicroPython puts the script's folder first
# on sys.path, and every module's path stays interned in the board's heap (an absolute path
# to the bundle cost the air board about 500 bytes).
MAIN = f"{BOARD_LINK}/main.py"
# Tells the firmware's stand-in for `network` that stdin is the stop pipe (see launch()).
STOP_VARIABLE = "URBANPULSE_HOST_STOP"


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
