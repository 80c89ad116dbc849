"""Sealed telemetry, CONTRACT.md version 2: the MAC and the chain of a board's messages.

A sealed payload is the bytes ``P`` + ``,"mac":"`` + 64 hex + ``"}``; the MAC is
HMAC-SHA256 with the device key over ``P`` + ``}`` (signing.split_member frames it, as it
does a command's signature). ``prev`` is the SHA-256 of the complete previous payload, or of
``genesis:{device_id}`` for a board's first message. Everything works on the bytes received:
nothing is re-serialised.
"""

from __future__ import annotations

import hashlib
import hmac

from .envelope import MAC_MEMBER, append_member

MAC_HEX = 64
_MAC_PREFIX = f',"{MAC_MEMBER}":"'.encode()
_TAIL = len(_MAC_PREFIX) + MAC_HEX + 2


def is_sealed(payload: bytes) -> bool:
    """The payload ends as a sealed one does (its MAC is not checked here)."""
    return (len(payload) > _TAIL and payload.endswith(b'"}')
            and payload[-_TAIL:-_TAIL + len(_MAC_PREFIX)] == _MAC_PREFIX)


def mac_of(closed: bytes, key: bytes) -> str:
    return hmac.new(key, closed, hashlib.sha256).hexdigest()


def check_mac(payload: bytes, key: bytes) -> bool:
    """The payload ends with a MAC member, and it is the device key's HMAC of the rest of its
    bytes. (The hot path: framed here, not with signing.split_member's regular expression; a
    value that is not hex simply does not compare equal.)"""
    if not is_sealed(payload):
        return False
    closed = payload[:-_TAIL] + b"}"
    mac = payload[-_TAIL + len(_MAC_PREFIX):-2]
    return hmac.compare_digest(hmac.new(key, closed, hashlib.sha256).hexdigest().encode(), mac)


def seal(closed: bytes, key: bytes) -> bytes:
    """``closed`` (``P`` + ``}``: every member, ``prev`` included) with its MAC appended."""
    return append_member(closed, MAC_MEMBER, mac_of(closed, key))


def digest(payload: bytes) -> bytes:
    """What the next message's ``prev`` names: SHA-256 of the complete payload."""
    return hashlib.sha256(payload).digest()


def genesis(device_id: str) -> bytes:
    """The ``prev`` of a board's first sealed message after provisioning."""
    return hashlib.sha256(b"genesis:" + device_id.encode("ascii")).digest()
