"""Flashing a board: MicroPython image (esptool), firmware bundle and config.json (mpremote).

Every step is an external command run as the technician could type it, so ``--dry-run`` can
print the exact argv and an error can show the tool's own message:

1. ``esptool --chip CHIP --port PORT erase-flash`` and ``write-flash -z OFFSET IMAGE``, the
   chip and its offset read from the image (field/chips.py: esptool refuses a board of another);
   Without an image (copying onto a board that may run the firmware): hold it first
   (``mpremote ... exec --no-follow`` of scripts/hold.py): it restarts and stays at the REPL
   for that one start, so that the firmware's watchdog, which Ctrl-C does not stop, cannot
   reset it in the middle of the copy;
2. wait until MicroPython answers on the port (first boot formats the filesystem), and refuse
   one that cannot load the bundle's bytecode;
3. ``mpremote connect PORT resume exec ... + fs cp ...``: directories, the ``.mpy`` bundle
   (firmware_bundle.build_bundle) and ``config.json``;
4. ``mpremote ... exec`` of a script that lists every file on the board with its size and
   SHA-256, compared with what was copied;
5. ``mpremote ... reset``: the board starts the firmware.

mpremote runs with ``resume``: its default soft reset is pointless right after esptool's
hard reset (and the unix port the tests use would exit on it).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .bundle import (
    ENTRY_FILES,
    PACKAGE,
    BundleError,
    board_script,
    build_bundle,
    firmware_source,
    mpy_cross_binary,
)
from .chips import (
    ESP_IMAGE_MAGIC,
    Chip,
    ChipError,
    board_mpy,
    bundle_mpy,
    check_board,
    image_chip,
    read_header,
)
from .provision import CA_FILE, ProvisionError, fingerprint, validate_with_firmware

MIN_IMAGE_BYTES = 64 * 1024
READY_MARK = "urbanpulse-board-ready"


class FlashError(RuntimeError):
    """A step failed; the message names the step and shows the tool's own output."""


@dataclass(frozen=True)
class Step:
    kind: str  # boot, hold, esptool, wait, copy, verify or reset: how flash() runs it
    title: str
    argv: list[str]
    timeout_s: float = 120.0


@dataclass(frozen=True)
class BoardFile:
    local: Path
    remote: str  # relative to the board's filesystem root

    def digest(self) -> tuple[int, str]:
        data = self.local.read_bytes()
        return len(data), hashlib.sha256(data).hexdigest()


@dataclass
class FlashPlan:
    port: str
    image: Path | None
    config: Path
    bundle_dir: Path
    baud: int = 460800
    reset: bool = True
    files: list[BoardFile] = field(default_factory=list)
    # The boot counter to leave on the board (None: keep what is there). Erasing the flash
    # loses it, and the gateway takes a repeated (device_id, boot, seq) for a duplicate.
    boot_count: int | None = None

    @property
    def directories(self) -> list[str]:
        dirs = {str(Path(f.remote).parent) for f in self.files}
        return sorted(d for d in dirs if d != ".")


def esptool_argv(port: str, baud: int, chip: Chip, *command: str) -> list[str]:
    # The esptool package of this interpreter (the venv's), whatever is on PATH.
    return [sys.executable, "-m", "esptool", "--chip", chip.name, "--port", port,
            "--baud", str(baud), *command]


def mpremote_argv(port: str, *command: str) -> list[str]:
    return [sys.executable, "-m", "mpremote", "connect", port, "resume", *command]


def planned_files(bundle_dir: Path, config: Path, source: Path | None = None) -> list[BoardFile]:
    """What goes on the board, named from the sources (so a dry run needs no compiler)."""
    src = source or firmware_source()
    files = [BoardFile(bundle_dir / name, name) for name in ENTRY_FILES if name != "main.py"]
    for module in sorted((src / PACKAGE).rglob("*.py")):
        remote = module.relative_to(src).with_suffix(".mpy").as_posix()
        files.append(BoardFile(bundle_dir / remote, remote))
    files.append(BoardFile(config, "config.json"))
    ca = config.with_name(CA_FILE)
    if ca.exists():  # a board that speaks TLS (provision --mqtt-ca)
        files.append(BoardFile(ca, CA_FILE))
    # Last: a board reset halfway through the copy (its watchdog, a cable pulled) starts
    # nothing, rather than half a firmware, and the copy can simply be run again.
    files.append(BoardFile(bundle_dir / "main.py", "main.py"))
    return files




# Runs on the board: its boot counter (firmware bootcount.py: the larger of the file and its
# temporary copy), 0 when there is none.
BOOT_COUNT_MARK = "BOOTCOUNT "


def boot_count_step(port: str) -> Step:
    read = board_script("boot_count", 'print("BOOTCOUNT", read_boot_count())')
    return Step("boot", "read the board's boot counter (kept across the erase)",
                mpremote_argv(port, "exec", read), 15.0)


def copy_step(plan: FlashPlan) -> Step:
    prepare = board_script(
        "flash_prepare", f"prepare({json.dumps(PACKAGE)}, {json.dumps(plan.directories)})"
    )
    if plan.boot_count is not None:
        # Never lower than what the board holds: the counter must only go up.
        prepare += board_script(
            "boot_count", f"write_boot_count(read_boot_count({plan.boot_count}))"
        )
    command: list[str] = ["exec", prepare]
    for f in plan.files:
        command += ["+", "fs", "cp", str(f.local), f":{f.remote}"]
    return Step("copy", "copy the firmware and config.json",
                mpremote_argv(plan.port, *command), 300.0)


def verify_step(port: str) -> Step:
    listing = board_script("list_files", 'walk("")')
    return Step("verify", "list the board's files", mpremote_argv(port, "exec", listing), 120.0)


def wait_step(port: str) -> Step:
    return Step("wait", "wait for MicroPython on the board",
                mpremote_argv(port, "exec", "import sys; i = sys.implementation; print("
                              f'"{READY_MARK}", "%d.%d.%d" % i.version[:3], '
                              'getattr(i, "_mpy", 0))'), 15.0)


def hold_step(port: str) -> Step:
    return Step("hold", "hold the board at the REPL (a restart without the firmware and its "
                "watchdog)", mpremote_argv(port, "exec", "--no-follow",
                                           board_script("hold", "hold()")), 6.0)


def steps(plan: FlashPlan) -> list[Step]:
    out: list[Step] = []
    if plan.image is None:
        out.append(hold_step(plan.port))
    else:
        chip = image_chip(read_header(plan.image))
        out.append(boot_count_step(plan.port))
        out.append(Step("esptool", f"erase the flash ({chip.name})",
                        esptool_argv(plan.port, plan.baud, chip, "erase-flash")))
        out.append(Step("esptool", "write the MicroPython image", esptool_argv(
            plan.port, plan.baud, chip, "write-flash", "-z", chip.offset, str(plan.image)),
            300.0))
    out.append(wait_step(plan.port))
    out.append(copy_step(plan))
    out.append(verify_step(plan.port))
    if plan.reset:
        out.append(Step("reset", "reset the board (it starts the firmware)",
                        mpremote_argv(plan.port, "reset"), 30.0))
    return out


# -- checks --------------------------------------------------------------------------------
def check_image(image: Path) -> None:
    if not image.is_file():
        raise FlashError(f"image {image} not found (download the ESP32_GENERIC .bin from "
                         "https://micropython.org/download/ESP32_GENERIC/)")
    head = read_header(image)
    size = image.stat().st_size
    if not head or head[0] != ESP_IMAGE_MAGIC or size < MIN_IMAGE_BYTES:
        raise FlashError(
            f"image {image} is not an ESP32 firmware image (first byte "
            f"{head[0] if head else 'none'!r}, expected {ESP_IMAGE_MAGIC:#x}; {size} bytes)"
        )
    try:
        image_chip(head)
    except ChipError as exc:
        raise FlashError(f"image {image}: {exc}") from None


def check_config(config: Path) -> str:
    """The config text, refused here if the board's own validator would refuse it."""
    try:
        text = config.read_text(encoding="utf-8")
    except OSError as exc:
        raise FlashError(f"config {config}: cannot read: {exc.strerror}") from None
    try:
        validate_with_firmware(text)
    except ProvisionError as exc:
        raise FlashError(f"config {config}: {exc}") from None
    return text


def check_port(port: str) -> None:
    if not Path(port).exists():
        raise FlashError(
            f"port {port} not found: is the board plugged in (USB data cable)? "
            "Boards show up as /dev/ttyUSB* or /dev/ttyACM*; `ls /dev/tty{USB,ACM}*`"
        )


# -- running -------------------------------------------------------------------------------
def _tail(text: str, lines: int = 15) -> str:
    return "\n".join("    " + line for line in text.strip().splitlines()[-lines:])


def run_step(step: Step, timeout_s: float | None = None) -> str:
    """Run one step; its stdout, or FlashError with the tool's stderr."""
    timeout = step.timeout_s if timeout_s is None else timeout_s
    try:
        result = subprocess.run(step.argv, capture_output=True, text=True,
                                timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        raise FlashError(f"{step.title}: no answer within {timeout:g} s\n{_tail(out)}"
                         ) from None
    if result.returncode != 0:
        raise FlashError(
            f"{step.title} failed (exit {result.returncode}):\n"
            f"{_tail(result.stderr + result.stdout)}"
        )
    return result.stdout


def wait_for_board(port: str, timeout_s: float) -> str:
    """The board's answer: the MicroPython release and its .mpy version."""
    deadline = time.monotonic() + timeout_s
    step = wait_step(port)
    last = ""
    while True:
        left = deadline - time.monotonic()
        try:
            out = run_step(step, max(2.0, min(step.timeout_s, left)))
            if READY_MARK in out:
                return out.split(READY_MARK, 1)[1].strip()
        except FlashError as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            raise FlashError(f"no MicroPython answered on {port} within {timeout_s:g} s; "
                             f"last attempt:\n{last}")
        time.sleep(1.0)


@dataclass(frozen=True)
class Verified:
    files: int
    config_fingerprint: str


def parse_listing(stdout: str) -> dict[str, tuple[int, str]]:
    found: dict[str, tuple[int, str]] = {}
    for line in stdout.splitlines():
        parts = line.strip().split(" ", 3)
        if len(parts) == 4 and parts[0] == "F" and parts[1].isdigit():
            found[parts[3]] = (int(parts[1]), parts[2])
    return found


def compare(files: Sequence[BoardFile], on_board: dict[str, tuple[int, str]]) -> Verified:
    problems = []
    expected = {f.remote for f in files}
    for f in files:
        size, digest = f.digest()
        got = on_board.get(f.remote)
        if got is None:
            problems.append(f"{f.remote}: missing on the board")
        elif got != (size, digest):
            problems.append(f"{f.remote}: board has {got[0]} bytes sha256 {got[1][:12]}, "
                            f"copied {size} bytes sha256 {digest[:12]}")
    for remote in sorted(on_board):
        if remote.startswith(PACKAGE + "/") and remote not in expected:
            problems.append(f"{remote}: on the board but not in this firmware (stale file)")
    if problems:
        raise FlashError("verify mismatch:\n" + "\n".join("    " + p for p in problems))
    config = next(f for f in files if f.remote == "config.json")
    return Verified(len(files), fingerprint(config.local.read_text(encoding="utf-8")))


def verify(plan: FlashPlan) -> Verified:
    return compare(plan.files, parse_listing(run_step(verify_step(plan.port))))


def build(plan: FlashPlan) -> None:
    try:
        build_bundle(plan.bundle_dir)
    except BundleError as exc:
        raise FlashError(str(exc)) from None
    missing = [f.local for f in plan.files if not f.local.is_file()]
    if missing:
        raise FlashError(f"the bundle lacks {', '.join(map(str, missing))}")


def flash(plan: FlashPlan, wait_s: float = 60.0,
          say: Callable[[str], None] = print) -> Verified:
    """Every step in order; stops at the first failure (FlashError)."""
    check_port(plan.port)
    verified: Verified | None = None
    for step in steps(plan):
        say(f"{step.title} ...")
        if step.kind == "boot":
            found = read_boot_count(step)
            if found is None and plan.boot_count is None:
                say("  no MicroPython answered: the boot counter starts again at 1; if this "
                    "id reported before, pass --boot-count N (above the boot that "
                    "`urbanpulse board check` shows)")
            elif found is not None:
                plan.boot_count = max(found, plan.boot_count or 0)
                say(f"  boot counter {found}: kept")
        elif step.kind == "esptool":
            run_esptool(step, plan.port)
        elif step.kind == "hold":
            try:
                run_step(step)
            except FlashError as exc:  # no MicroPython answered: the wait step says so
                say(f"  not held ({str(exc).splitlines()[0]}); going on")
        elif step.kind == "wait":
            check_micropython(wait_for_board(plan.port, wait_s), say)
        elif step.kind == "copy":
            build(plan)
            run_step(copy_step(plan))  # built now: it writes the boot counter read above
        elif step.kind == "verify":
            verified = verify(plan)
        else:
            run_step(step)
    assert verified is not None
    return verified


def check_micropython(answer: str, say: Callable[[str], None]) -> None:
    """The board's MicroPython (wait_step's answer: release, sys.implementation._mpy) can
    load the bundle mpy-cross makes, or FlashError."""
    words = answer.split()
    release = words[0] if words else "(no answer)"
    board = board_mpy(int(words[1]) if len(words) > 1 and words[1].isdigit() else 0)
    try:
        check_board(release, board, bundle_mpy(mpy_cross_binary()))
    except (ChipError, BundleError) as exc:
        raise FlashError(str(exc)) from None
    say(f"  MicroPython {release} (.mpy {board})")


def read_boot_count(step: Step) -> int | None:
    """The board's boot counter, or None when no MicroPython answered (a new board)."""
    try:
        out = run_step(step)
    except FlashError:
        return None
    for line in out.splitlines():
        if line.startswith(BOOT_COUNT_MARK) and line[len(BOOT_COUNT_MARK):].strip().isdigit():
            return int(line[len(BOOT_COUNT_MARK):])
    return None


def run_esptool(step: Step, port: str) -> None:
    try:
        run_step(step)
    except FlashError as exc:
        text = str(exc)
        if "Failed to connect" in text or "No serial data received" in text:
            raise FlashError(
                f"no board answered on {port}: {step.title} could not reach the ESP32's "
                "bootloader (hold BOOT while it connects, or check the cable)\n" + text
            ) from None
        raise


def describe(plan: FlashPlan) -> list[str]:
    """The dry run: every command as it would run, shell-quoted."""
    lines = []
    for step in steps(plan):
        lines.append(f"# {step.title}")
        if step.kind == "copy":
            lines.append(f"# (first: build the .mpy bundle into {plan.bundle_dir} with mpy-cross)")
            if plan.image is not None:
                lines.append("# (the boot counter read before the erase is written back here)")
        lines.append(shlex.join(step.argv))
    return lines
