"""Receipts, CONTRACT.md v2: for each UTC hour of arrival and district, the Merkle root of
the sealed payloads the gateway accepted, signed with its receipt key.

The receipt key signs the ASCII statement
``urbanpulse-receipt-v1|{district}|{hour}|{leaf count}|{root hex}``, ``hour`` as
``YYYY-MM-DDTHH:00:00Z``; the leaves are the payloads ordered by (device_id, boot, seq).
A receipt document (published retained on ``{prefix}/receipts/{district}``, archived, and
shipped with every export) is compact JSON with these members, ``sig`` last:
``{"v":1,"district":..,"hour":..,"leaves":..,"root":..,"key":<public key hex>,"sig":..}``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import merkle
from .vocabulary import HOUR_MS

if TYPE_CHECKING:  # the library is loaded where a receipt is signed or checked
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

STATEMENT_PREFIX = "urbanpulse-receipt-v1"


class ReceiptError(ValueError):
    """A receipt document that is not one, or whose signature does not hold."""


def hour_text(hour_ms: int) -> str:
    if hour_ms % HOUR_MS:
        raise ValueError(f"{hour_ms} is not the start of an hour")
    return time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(hour_ms // 1000))


def statement(district: str, hour: str, leaves: int, root_hex: str) -> bytes:
    return f"{STATEMENT_PREFIX}|{district}|{hour}|{leaves}|{root_hex}".encode("ascii")


@dataclass(frozen=True)
class Receipt:
    district: str
    hour: str
    leaves: int
    root: str  # hex
    key: str  # the receipt public key, hex
    sig: str  # hex

    def statement(self) -> bytes:
        return statement(self.district, self.hour, self.leaves, self.root)

    @classmethod
    def from_document(cls, document: bytes | str | dict[str, Any]) -> Receipt:
        """The receipt a document holds (its signature not checked: parse_receipt does)."""
        try:
            doc = document if isinstance(document, dict) else json.loads(document)
            return cls(str(doc["district"]), str(doc["hour"]), int(doc["leaves"]),
                       str(doc["root"]), str(doc["key"]), str(doc["sig"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ReceiptError(f"not a receipt: {exc}") from None

    def document(self) -> bytes:
        return json.dumps({"v": 1, "district": self.district, "hour": self.hour,
                           "leaves": self.leaves, "root": self.root, "key": self.key,
                           "sig": self.sig}, separators=(",", ":")).encode("ascii")


def make_receipt(district: str, hour_ms: int, payloads: Sequence[bytes],
                 key: Ed25519PrivateKey) -> Receipt:
    """The receipt of ``payloads``, already in (device_id, boot, seq) order."""
    root_hex = merkle.root([merkle.leaf_hash(p) for p in payloads]).hex()
    hour = hour_text(hour_ms)
    sig = key.sign(statement(district, hour, len(payloads), root_hex)).hex()
    public = key.public_key().public_bytes_raw().hex()
    return Receipt(district, hour, len(payloads), root_hex, public, sig)


def parse_receipt(document: bytes | str | dict[str, Any], public_hex: str) -> Receipt:
    """The receipt of a document, its signature checked with ``public_hex``; ReceiptError
    naming what is wrong otherwise."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    receipt = Receipt.from_document(document)
    if receipt.key != public_hex:
        raise ReceiptError(f"signed by another key ({receipt.key[:16]}..)")
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex)).verify(
            bytes.fromhex(receipt.sig), receipt.statement())
    except (InvalidSignature, ValueError):
        raise ReceiptError(
            f"bad signature on the receipt of {receipt.district} {receipt.hour}") from None
    return receipt
