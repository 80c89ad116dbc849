"""Over-the-air updates on the wire: the release statement, the manifest and the chunks.

Not part of CONTRACT.md (only our own boards and tools speak it); the board's side is
firmware/urbanpulse_fw/ota.py, which must agree with every fact here.

- A release's manifest is text: the header ``urbanpulse-ota 1 {version} {mpy}`` (``mpy``: the
  ``.mpy`` format its files need, "6.3"), then one line ``{size} {sha256 hex} {path}`` per file,
  sorted by path. Paths are ``urbanpulse_fw/...`` in ``a-z 0-9 _ . /``.
- The release key signs ``urbanpulse-ota-v1|{version}|{manifest sha256 hex}|{manifest size}``
  (Ed25519): the manifest's hash then covers every file.
- The "ota" command (a signed command, CONTRACT.md v2) carries ``version``, ``manifest``
  (its SHA-256), ``size`` and ``release_sig``. The board answers on ``cmd/ack`` with a state:
  ``fetching``, ``installed`` (rebooting into it, on trial), ``running`` (confirmed), or
  ``ok: false`` and an ``error`` (``rolled_back`` after a failed trial).
- The board asks for bytes on ``{prefix}/{id}/ota/req`` with ``{"id":..,"f":file,"o":offset}``
  (file 0 is the manifest, file i its i-th line); the answer on ``{prefix}/{id}/ota`` is
  ``b"{file} {offset}\\n"`` followed by at most CHUNK_BYTES of the file from that offset.
"""

from __future__ import annotations

import re

MANIFEST_MAGIC = "urbanpulse-ota"
MANIFEST_VERSION = "1"
STATEMENT_PREFIX = "urbanpulse-ota-v1"
OP = "ota"
# The commands `urbanpulse ota push` sends are named "ota-" and 8 hex digits: the network
# dashboard and `board check` find a board's update answers by it.
OTA_ID_PREFIX = "ota-"
REQUEST_CHANNEL = "ota/req"
CHUNK_CHANNEL = "ota"
# A chunk: what a 64 KiB board receives in one piece beside its running firmware (measured
# with bench/bench_ota.py).
CHUNK_BYTES = 512
MAX_MANIFEST_BYTES = 65535  # the board refuses a bigger one
PATH = re.compile(r"urbanpulse_fw/[a-z0-9_./]+")
# The answers' states (cmd/ack "state"), in the order a board goes through them.
FETCHING, INSTALLED, RUNNING = "fetching", "installed", "running"


def statement(version: str, manifest_sha256: str, manifest_size: int) -> bytes:
    """What the release key signs."""
    return f"{STATEMENT_PREFIX}|{version}|{manifest_sha256}|{manifest_size}".encode()


def chunk(file: int, offset: int, data: bytes) -> bytes:
    return b"%d %d\n" % (file, offset) + data
