"""The gateway's device key store (CONTRACT.md v2, "Keys"): private to its owner, refused
otherwise, never echoing a key in an error, reloaded when it changes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from urbanpulse.registry.keystore import (
    KeyStoreError,
    KeyStoreWatcher,
    load_keys,
    render_keys,
    with_key,
)

KEY_A = bytes(range(32))
KEY_B = bytes(range(32, 64))


def store(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "device-keys.json"
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)
    return path


def test_a_store_others_can_read_is_refused(tmp_path: Path) -> None:
    path = store(tmp_path, render_keys({"air-n-001": KEY_A}), 0o644)
    with pytest.raises(KeyStoreError, match=r"owner only.*chmod 600"):
        load_keys(path)
    os.chmod(path, 0o600)
    assert load_keys(path) == {"air-n-001": KEY_A}
    assert load_keys(tmp_path / "missing.json") == {}


def test_bad_entries_are_named_without_showing_a_key(tmp_path: Path) -> None:
    secret = "ab" * 31 + "zz"
    with pytest.raises(KeyStoreError, match="air-n-001: the key must be 64") as err:
        load_keys(store(tmp_path, f'{{"air-n-001": "{secret}"}}'))
    assert secret not in str(err.value)
    with pytest.raises(KeyStoreError, match="'Air!' is not a device id"):
        load_keys(store(tmp_path, '{"Air!": "' + "00" * 32 + '"}'))
    with pytest.raises(KeyStoreError, match="not valid JSON"):
        load_keys(store(tmp_path, "{"))


def test_adding_a_key_stages_a_private_copy(tmp_path: Path) -> None:
    path = store(tmp_path, render_keys({"air-n-001": KEY_A}))
    staging = tmp_path / "staging"
    staging.mkdir()
    staged = with_key(path, "lamp-c-07", KEY_B, staging)
    assert stat.S_IMODE(staged.stat().st_mode) == 0o600
    assert load_keys(staged) == {"air-n-001": KEY_A, "lamp-c-07": KEY_B}
    assert load_keys(path) == {"air-n-001": KEY_A}  # the store itself untouched


def test_watcher_reloads_and_keeps_the_last_good_keys(tmp_path: Path) -> None:
    path = store(tmp_path, render_keys({"air-n-001": KEY_A}))
    watcher = KeyStoreWatcher(path)
    assert watcher.poll() is False
    path.write_text(render_keys({"air-n-001": KEY_A, "lamp-c-07": KEY_B}), encoding="utf-8")
    assert watcher.poll() is True
    assert set(watcher.keys) == {"air-n-001", "lamp-c-07"}
    os.chmod(path, 0o644)
    path.write_text(render_keys({}), encoding="utf-8")
    with pytest.raises(KeyStoreError):
        watcher.poll()
    assert set(watcher.keys) == {"air-n-001", "lamp-c-07"}
