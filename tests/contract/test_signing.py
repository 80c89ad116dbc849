"""Signed commands and key files (CONTRACT.md v2) on the operator's side: the bytes a signature
covers, checked with the cryptography library directly as an outside tool would, and key files
that are refused when they could leak."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from urbanpulse.contract.signing import (
    EnvelopeError,
    KeyFileError,
    load_private,
    load_public_hex,
    public_hex,
    sign_command,
    split_member,
    verify_command,
    write_private,
)

COMMAND = {"id": "c-17", "op": "reboot", "device": "lamp-07", "n": 118, "exp": 1796600000}


def test_the_signature_covers_the_payload_without_its_sig_member() -> None:
    key = Ed25519PrivateKey.generate()
    payload = sign_command(COMMAND, key)
    assert payload.startswith(b'{"id":"c-17","op":"reboot","device":"lamp-07","n":118,'
                              b'"exp":1796600000,"sig":"')
    # What any verifier does with the contract's rule: P + "}" is signed.
    head, _, sig = payload.rpartition(b',"sig":"')
    assert sig.endswith(b'"}') and len(sig) == 130
    key.public_key().verify(bytes.fromhex(sig[:-2].decode()), head + b"}")
    assert json.loads(payload)["sig"] == sig[:-2].decode()
    assert verify_command(payload, key.public_key().public_bytes_raw()) == {
        **COMMAND, "sig": sig[:-2].decode()}


def test_tampered_misformed_or_foreign_payloads_fail_verification() -> None:
    key = Ed25519PrivateKey.generate()
    pub = key.public_key().public_bytes_raw()
    payload = sign_command(COMMAND, key)
    with pytest.raises(EnvelopeError, match="bad_signature"):
        verify_command(payload.replace(b"lamp-07", b"lamp-08"), pub)
    with pytest.raises(EnvelopeError, match="bad_signature"):
        verify_command(payload, Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    # The signature must be the last member, in full, lowercase hex.
    with pytest.raises(EnvelopeError, match="does not end with"):
        verify_command(payload[:-2] + b'","x":1}', pub)
    with pytest.raises(EnvelopeError, match="does not end with"):
        verify_command(payload[:-4] + b'"}', pub)
    with pytest.raises(EnvelopeError, match="does not end with"):
        verify_command(payload.upper(), pub)
    with pytest.raises(EnvelopeError, match="does not end with"):
        split_member(b'{"sig":"' + b"0" * 128 + b'"}', "sig", 128)  # nothing signed
    with pytest.raises(ValueError, match="needs exp"):
        sign_command({k: v for k, v in COMMAND.items() if k != "exp"}, key)


def test_private_keys_are_created_private_and_refused_when_others_can_read_them(
        tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "command.key"
    write_private(path, key)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_private(path).public_key().public_bytes_raw() == \
        key.public_key().public_bytes_raw()
    with pytest.raises(FileExistsError):
        write_private(path, Ed25519PrivateKey.generate())  # never overwritten
    os.chmod(path, 0o640)
    with pytest.raises(KeyFileError, match="owner only"):
        load_private(path)
    (tmp_path / "not-a-key").write_text("hello\n")
    os.chmod(tmp_path / "not-a-key", 0o600)
    with pytest.raises(KeyFileError, match="not an unencrypted PEM"):
        load_private(tmp_path / "not-a-key")


def test_public_key_files_are_64_hex_digits(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    pub = tmp_path / "command.pub"
    pub.write_text(public_hex(key) + "\n")
    assert load_public_hex(pub) == public_hex(key)
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(load_public_hex(pub)))
    private = tmp_path / "command.key"
    write_private(private, key)
    assert load_public_hex(private) == public_hex(key)  # its public half
    pub.write_text(public_hex(key).upper())
    with pytest.raises(KeyFileError, match="64 lowercase hex"):
        load_public_hex(pub)
