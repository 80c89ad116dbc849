"""Signed commands and the keys of CONTRACT.md version 2, on the operator's side.

One rule frames both the board's MAC and the operator's signature: a payload is the bytes
``P`` followed by ``,"NAME":"`` + hex + ``"}``, and the MAC or signature covers ``P`` + ``}``,
the exact bytes without that last member. Nothing is re-serialised, so a verifier in any
language checks the bytes it received.

Key files: a private key is PKCS#8 PEM (what OpenSSL and every Ed25519 library read), created
0600; a public key is its 32 raw bytes as 64 lowercase hex digits on one line, the form the
board's ``config.json`` and outside verifiers take.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .envelope import MAC_MEMBER, SIG_MEMBER, EnvelopeError, append_member, split_member

__all__ = ["MAC_MEMBER", "SIG_MEMBER", "EnvelopeError", "append_member", "split_member"]

DEVICE_KEY_BYTES = 32
# The members every signed command carries besides its op's own (CONTRACT.md v2).
SIGNED_COMMAND_KEYS = ("id", "op", "device", "n", "exp")
# The board's answers to a command it does not carry out, beside the op's own errors.
REFUSALS = ("retained", "unsigned", "bad_signature", "wrong_device", "replayed", "expired")
# Config keys a "config" command changes only with "unsafe": true (the board's link to the
# city and its safety nets: a wrong value can cut the board off for good; and its time
# source, which certificates and the commands' expiry rest on). The firmware's cfgtrial.UNSAFE
# is the same (tests/firmware/test_kinds.py).
UNSAFE_CONFIG_KEYS = ("mqtt", "wifi", "watchdog_s", "rollback_s", "ntp_host")
# Config keys no command changes (cfgtrial.FIXED): the release key decides what firmware a
# board runs, apart from the command key, whose holders decide when and where.
FIXED_CONFIG_KEYS = ("ota_key",)
_HEX64 = re.compile(r"[0-9a-f]{64}")


class KeyFileError(ValueError):
    """A key file that cannot be used; the message names the file and why."""


# -- signed commands -------------------------------------------------------------------------
def command_bytes(command: Mapping[str, Any]) -> bytes:
    """The command as compact JSON, the part a signature covers."""
    missing = [k for k in SIGNED_COMMAND_KEYS if k not in command]
    if missing:
        raise ValueError(f"a signed command needs {', '.join(missing)}")
    if SIG_MEMBER in command:
        raise ValueError("the command is already signed")
    return json.dumps(dict(command), separators=(",", ":"), ensure_ascii=True).encode()


def sign_command(command: Mapping[str, Any], key: Ed25519PrivateKey) -> bytes:
    """The payload to publish on ``{prefix}/{device}/cmd``."""
    signed = command_bytes(command)
    return append_member(signed, SIG_MEMBER, key.sign(signed).hex())


def verify_command(payload: bytes, public_key: bytes) -> dict[str, Any]:
    """The command of a signed payload; EnvelopeError if it is not one."""
    signed, sig = split_member(payload, SIG_MEMBER, 128)
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(bytes.fromhex(sig), signed)
    except InvalidSignature:
        raise EnvelopeError("bad_signature") from None
    command: dict[str, Any] = json.loads(payload)
    return command


# -- key files -------------------------------------------------------------------------------
def write_private(path: Path, key: Ed25519PrivateKey) -> None:
    """The key as PKCS#8 PEM in a new file, 0600 from its creation (never overwritten)."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def public_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes_raw().hex()


def load_private(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the key: {exc.strerror}") from None
    if os.stat(path).st_mode & 0o077:
        raise KeyFileError(f"{path}: a private key must be readable by its owner only "
                        f"(chmod 600 {path})")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 key")
    return key


def load_public_hex(path: Path) -> str:
    """A public key file's 64 hex digits (a PEM private key file gives its public half)."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path}: cannot read the public key: {exc}") from None
    if "PRIVATE KEY" in text:
        return public_hex(load_private(path))
    if not _HEX64.fullmatch(text):
        raise KeyFileError(f"{path}: a public key is 64 lowercase hex digits on one line")
    return text


def new_device_key() -> str:
    """A board's device key (CONTRACT.md v2), as 64 hex digits."""
    return secrets.token_bytes(DEVICE_KEY_BYTES).hex()


def is_key_hex(text: str) -> bool:
    return _HEX64.fullmatch(text) is not None
