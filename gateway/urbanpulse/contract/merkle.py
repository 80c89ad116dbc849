"""Merkle trees of CONTRACT.md v2's receipts, in RFC 6962's shape (RFC 9162 section 2.1).

leaf = SHA-256(0x00 || payload), node = SHA-256(0x01 || left || right); a tree of n leaves
splits at k, the largest power of two below n. An inclusion proof is the audit path from the
leaf to the root, nearest sibling first; anyone can check it with the receipt's root alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def leaf_hash(payload: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + payload).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def root(leaves: Sequence[bytes]) -> bytes:
    """The root over leaf hashes (SHA-256 of nothing for an empty tree)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    level = list(leaves)
    # Bottom-up, pairing left to right and carrying an odd last node up: the same tree as
    # the recursive split at the largest power of two.
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf ``index`` (RFC 6962 PATH(m, D[n]))."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} of a tree of {len(leaves)}")
    path: list[bytes] = []
    lo, hi = 0, len(leaves)
    # Top-down, then reversed: nearest sibling first.
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(root(leaves[lo + k:hi]))
            hi = lo + k
        else:
            path.append(root(leaves[lo:lo + k]))
            lo += k
    return path[::-1]


def verify(leaf: bytes, index: int, size: int, path: Sequence[bytes], expected: bytes) -> bool:
    """Leaf hash ``leaf`` is at ``index`` in the tree of ``size`` leaves whose root is
    ``expected`` (RFC 9162 section 2.1.3.2)."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected


def all_proofs(leaves: Sequence[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """The root and every leaf's audit path at once (n log n hashes, where proof() per leaf
    would take n^2)."""
    if not leaves:
        return root(leaves), []

    def build(lo: int, hi: int) -> tuple[bytes, list[list[bytes]]]:
        if hi - lo == 1:
            return leaves[lo], [[]]
        k = _split(hi - lo)
        left, left_paths = build(lo, lo + k)
        right, right_paths = build(lo + k, hi)
        for p in left_paths:
            p.append(right)
        for p in right_paths:
            p.append(left)
        return node_hash(left, right), left_paths + right_paths

    return build(0, len(leaves))
