"""The gateway's key store: each board's device key (CONTRACT.md v2, "Keys").

A JSON object, device id to 64 hex digits, in a file that only the gateway's user may read:
a store that others can read is refused, as ssh refuses a private key. Never in the registry
CSV, a log line or an export. Provisioning adds a board's key (the new file is written 0600
from its creation, then renamed over the old one), and the gateway reloads the file when it
changes, like the registry.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path

from urbanpulse.contract.vocabulary import DEVICE_ID_PATTERN

from .watch import FileWatcher

_ID = re.compile(DEVICE_ID_PATTERN)
_KEY = re.compile(r"[0-9a-f]{64}")


class KeyStoreError(ValueError):
    """The key store cannot be used; the message names the file and why."""


def _check_private(path: Path) -> None:
    mode = path.stat().st_mode
    if stat.S_IMODE(mode) & 0o077:
        raise KeyStoreError(
            f"{path}: the device key store must be readable by its owner only "
            f"(it is {stat.S_IMODE(mode):o}; chmod 600 {path})")


def load_keys(path: Path) -> dict[str, bytes]:
    """Device id to its 32-byte key. A missing file is an empty store."""
    try:
        _check_private(path)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise KeyStoreError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise KeyStoreError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise KeyStoreError(f"{path}: must be a JSON object of device id to key")
    keys = {}
    for device_id, key in data.items():
        if not _ID.fullmatch(device_id):
            raise KeyStoreError(f"{path}: {device_id!r} is not a device id")
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            # The value is a secret: never echoed.
            raise KeyStoreError(f"{path}: {device_id}: the key must be 64 lowercase hex digits")
        keys[device_id] = bytes.fromhex(key)
    return keys


def render_keys(keys: Mapping[str, bytes]) -> str:
    return json.dumps({d: keys[d].hex() for d in sorted(keys)}, indent=1) + "\n"


def with_key(path: Path, device_id: str, key: bytes, tmp_dir: Path) -> Path:
    """A copy of the store at ``path`` with ``device_id``'s key set, written 0600 in
    ``tmp_dir`` (provisioning moves it into place with its other files)."""
    keys = load_keys(path)
    keys[device_id] = key
    staged = tmp_dir / "device-keys.json"
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(render_keys(keys))
    return staged


class KeyStoreWatcher(FileWatcher[dict[str, bytes]]):
    """The key store, reloaded when the file changes; a broken edit keeps the last good one."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, load_keys)

    @property
    def keys(self) -> dict[str, bytes]:
        return self.value
