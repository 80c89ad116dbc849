"""What is flashed where: the chip a MicroPython image is built for, and whether a board's
MicroPython can run the bundle's bytecode.

An ESP image begins with a header whose extended part names the chip (``chip_id``, a 16-bit
little-endian field at byte 12, ESP-IDF's ``esp_image_header_t``). MicroPython's ``.bin`` for a
board starts with the bootloader, written at 0x1000 on the ESP32 and ESP32-S2 and at 0x0 on the
later chips (0x2000 on the ESP32-P4). esptool is then told that chip, and refuses a board of
another.

A board loads bytecode ``.mpy`` files of one version only (``sys.implementation._mpy``, its low
byte; the sub-version matters for native code, which the bundle has none of); ``mpy-cross
--version`` says which it writes. Version 6 came with MicroPython 1.20: an older board cannot
run the bundle.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

ESP_IMAGE_MAGIC = 0xE9  # first byte of an ESP bootloader / app image
_CHIP_ID_AT = 12


@dataclass(frozen=True)
class Chip:
    name: str  # as esptool's --chip takes it
    offset: str  # where MicroPython's .bin (bootloader first) is written


# ESP-IDF's esp_chip_id_t.
CHIPS = {
    0x0000: Chip("esp32", "0x1000"),
    0x0002: Chip("esp32s2", "0x1000"),
    0x0005: Chip("esp32c3", "0x0"),
    0x0009: Chip("esp32s3", "0x0"),
    0x000C: Chip("esp32c2", "0x0"),
    0x000D: Chip("esp32c6", "0x0"),
    0x0010: Chip("esp32h2", "0x0"),
    0x0012: Chip("esp32p4", "0x2000"),
}


class ChipError(ValueError):
    pass


def image_chip(header: bytes) -> Chip:
    """The chip an image (its first bytes) is built for."""
    if len(header) < _CHIP_ID_AT + 2 or header[0] != ESP_IMAGE_MAGIC:
        raise ChipError("not an ESP firmware image (no ESP image header)")
    chip_id = int.from_bytes(header[_CHIP_ID_AT:_CHIP_ID_AT + 2], "little")
    if chip_id not in CHIPS:
        raise ChipError(f"an image for an unknown chip (chip id {chip_id:#06x})")
    return CHIPS[chip_id]


@dataclass(frozen=True)
class MpyVersion:
    version: int
    sub: int

    def __str__(self) -> str:
        return f"v{self.version}.{self.sub}"


def board_mpy(mpy: int) -> MpyVersion:
    """From a board's ``sys.implementation._mpy``."""
    return MpyVersion(mpy & 0xFF, (mpy >> 8) & 3)


def bundle_mpy(mpy_cross: str) -> MpyVersion:
    """What ``mpy-cross`` writes (its --version line)."""
    out = subprocess.run([mpy_cross, "--version"], capture_output=True, text=True,
                         check=False, timeout=30).stdout
    found = re.search(r"mpy v(\d+)\.(\d+)", out)
    if not found:
        raise ChipError(f"mpy-cross did not say which .mpy version it writes: {out.strip()!r}")
    return MpyVersion(int(found.group(1)), int(found.group(2)))


def check_board(board_version: str, board: MpyVersion, bundle: MpyVersion) -> None:
    """Refuse a board whose MicroPython cannot load the bundle's bytecode."""
    if board.version != bundle.version:
        raise ChipError(
            f"the board runs MicroPython {board_version}, which loads .mpy {board}; the "
            f"bundle is .mpy {bundle} (mpy-cross's): flash a MicroPython image of the same "
            "release as mpy-cross (--image), or install the mpy-cross of the board's release"
        )


def read_header(image: Path) -> bytes:
    with image.open("rb") as f:
        return f.read(64)
