"""A MicroPython "board" on a serial-like port, for mpremote: what is real and what is not.

Real: the REPL, raw REPL (Ctrl-A), raw paste (Ctrl-E) and the filesystem are the MicroPython
unix port's own (``micropython`` runs its REPL on a pseudo-terminal, exactly as it does on a
terminal); mpremote is the real tool talking to it through pyserial, as to a USB port.

Stand-in: the serial link. mpremote needs a device path to open, and the REPL's pty master has
none, so a thread copies bytes between the REPL's pty and a second pty whose /dev/pts path is
the "port". It forwards bytes unchanged, in both directions, and never answers anything itself.
Not covered: USB-serial adapters, DTR/RTS resets, baud rates (a pty ignores them), and the
ESP32 port's own quirks. The board's filesystem is ``flash_dir`` (the unix port's cwd).
One difference mpremote meets: the unix port exits on the soft reset (Ctrl-D in raw REPL)
where an ESP32 reboots, so mpremote must run with ``resume`` (as urbanpulse flash does).

Resets: the unix port has no machine.reset; the firmware and scripts/hold.py exit with code 3
instead, and the host watchdog SIGKILLs the process. After either, the board is powered on
again (a reset), as an ESP32 restarts. With ``program`` (micropython's arguments, e.g. the
firmware: ``-i -c "import boot, main"``) a start runs it, then the REPL.
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import subprocess
import threading
import tty
from pathlib import Path
from types import TracebackType

from urbanpulse.field.bundle import find_tool


class PtyLink:
    """Two pseudo-terminals joined by a byte-forwarding thread: ``port`` is the path a tool
    opens, ``device_fd`` is the other end's slave (for the board process's stdio)."""

    def __init__(self) -> None:
        self._dev_master, self.device_fd = pty.openpty()
        self._port_master, self._port_slave = pty.openpty()
        # Raw, so that neither side's line discipline rewrites bytes (no \n -> \r\n, no echo).
        tty.setraw(self.device_fd)
        tty.setraw(self._port_slave)
        self.port = os.ttyname(self._port_slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._forward, daemon=True)
        self._thread.start()

    def _forward(self) -> None:
        pairs = {self._dev_master: self._port_master, self._port_master: self._dev_master}
        while not self._stop.is_set():
            ready, _, _ = select.select(list(pairs), [], [], 0.1)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:  # the other side has no slave open right now
                    continue
                if data:
                    os.write(pairs[fd], data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for fd in (self._dev_master, self._port_master, self._port_slave, self.device_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


class PtyBoard:
    """The MicroPython unix port's REPL behind a PtyLink; its cwd is the board's flash."""

    def __init__(self, flash_dir: Path, micropypath: str | None = None,
                 start: bool = True, program: list[str] | None = None) -> None:
        self.flash_dir = flash_dir
        self.program = program or []
        self.resets = 0
        self._closing = False
        flash_dir.mkdir(parents=True, exist_ok=True)
        self.link = PtyLink()
        self.port = self.link.port
        self._env = dict(os.environ)
        if micropypath is not None:
            self._env["MICROPYPATH"] = micropypath
        self._env["URBANPULSE_HOST_TTY"] = "1"  # Ctrl-C interrupts the firmware (network.py)
        self.process: subprocess.Popen[bytes] | None = None
        if start:
            self.power_on()

    def power_on(self) -> None:
        fd = self.link.device_fd
        micropython = find_tool("micropython")
        assert micropython, "micropython (the unix port) is not installed: run `make setup`"
        self.process = subprocess.Popen(
            [micropython, *self.program], stdin=fd, stdout=fd, stderr=fd, cwd=self.flash_dir,
            env=self._env, start_new_session=True,
        )
        threading.Thread(target=self._restart, args=(self.process,), daemon=True).start()

    def _restart(self, process: subprocess.Popen[bytes]) -> None:
        """Power on again after a reset (exit 3) or the host watchdog (SIGKILL)."""
        code = process.wait()
        if not self._closing and code in (3, -9):
            self.resets += 1
            self.power_on()

    def close(self) -> None:
        self._closing = True
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.link.close()

    def __enter__(self) -> PtyBoard:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
