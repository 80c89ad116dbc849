"""The envelope of CONTRACT.md version 2: a payload is the bytes ``P`` followed by
``,"NAME":"`` + hex + ``"}``, and the MAC or signature covers ``P`` + ``}``, the exact bytes
without that last member. Apart from the keys (signing.py), so that checking a board's MAC
does not load a cryptography library (a gateway worker's memory).
"""

from __future__ import annotations

import re

SIG_MEMBER = "sig"
MAC_MEMBER = "mac"


class EnvelopeError(ValueError):
    """A payload whose last member is not the expected signature or MAC, or whose signature
    does not verify."""


# -- the envelope ----------------------------------------------------------------------------
def append_member(closed: bytes, name: str, hex_value: str) -> bytes:
    """``closed`` (a JSON object's bytes, ``P`` + ``}``) with ``name`` as its last member."""
    if not closed.startswith(b"{") or not closed.endswith(b"}") or closed == b"{}":
        raise EnvelopeError("the signed part must be a non-empty JSON object")
    return closed[:-1] + f',"{name}":"{hex_value}"}}'.encode()


def split_member(payload: bytes, name: str, hex_len: int) -> tuple[bytes, str]:
    """(the signed bytes ``P`` + ``}``, the hex value) of ``payload`` whose last member is
    ``name``; EnvelopeError if it is not exactly so formed."""
    tail = len(name) + hex_len + 7  # ,"NAME":" + hex + "}
    head = payload[:-tail]
    member = payload[-tail:]
    prefix = f',"{name}":"'.encode()
    value = member[len(prefix):-2]
    if (len(payload) <= tail + 1 or not head.startswith(b"{") or not member.startswith(prefix)
            or not member.endswith(b'"}') or not re.fullmatch(rb"[0-9a-f]+", value)):
        raise EnvelopeError(f'the payload does not end with ,"{name}":"<{hex_len} hex digits>"}}')
    return head + b"}", value.decode()
