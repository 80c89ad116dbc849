# SHA-512 (FIPS 180-4), which Ed25519 needs and the ESP32's hashlib lacks. A module of its
# own so that a signature check loads it, hashes, and unloads it before the curve arithmetic
# (ed25519.py) is loaded: the two never hold heap at once.
#
# The round constants and initial hash are computed, not stored: the first 64 bits of the
# fractional parts of the cube roots of the first 80 primes (square roots of the first 8),
# FIPS 180-4, 4.2.3 and 5.3.5. That costs a few ms and saves a 640-byte table. The state,
# the working variables and the schedule are arrays of 64-bit words: as ints they would be
# 32 heap objects (big ints on the ESP32, where small ints are 31-bit).
from array import array

_M = (1 << 64) - 1


def _next_prime(p):
    while True:
        p += 1
        q = 2
        while q * q <= p and p % q:
            q += 1
        if q * q > p:
            return p


def _frac_root(p, k):
    """The first 64 bits of the fractional part of p ** (1 / k) (k = 2 or 3): the integer
    k-th root of p << 64k by Newton's method from above."""
    n = p << (64 * k)
    x = 8 << 64  # above the root for every prime used (409 ** (1 / 3) < 8)
    while True:
        y = ((k - 1) * x + n // x ** (k - 1)) // k
        if y >= x:
            return x & _M
        x = y


def _ror(x, n):
    return (x >> n | x << (64 - n)) & _M


def _block(h, v, w, blk):
    for i in range(16):
        w[i] = int.from_bytes(blk[8 * i:8 * i + 8], "big")
    for i in range(8):
        v[i] = h[i]
    p = 1
    for i in range(80):
        p = _next_prime(p)
        j = i & 15
        if i > 15:
            x = w[(i - 15) & 15]
            y = w[(i - 2) & 15]
            w[j] = (w[j] + (_ror(x, 1) ^ _ror(x, 8) ^ x >> 7) + w[(i - 7) & 15]
                    + (_ror(y, 19) ^ _ror(y, 61) ^ y >> 6)) & _M
        # The working variables rotate through v instead of moving: at round i, a is
        # v[-i % 8], b the next one, and so on.
        r = -i & 7
        x = v[(r + 4) & 7]  # e
        t = (v[(r + 7) & 7] + (_ror(x, 14) ^ _ror(x, 18) ^ _ror(x, 41))
             + (x & v[(r + 5) & 7] ^ (_M ^ x) & v[(r + 6) & 7]) + _frac_root(p, 3) + w[j])
        x = v[r]  # a
        y = v[(r + 1) & 7]  # b
        u = v[(r + 2) & 7]  # c
        v[(r + 3) & 7] = (v[(r + 3) & 7] + t) & _M  # d + t: the next e
        # The next a goes where h was; every other variable is one further on already.
        v[(r + 7) & 7] = (t + (_ror(x, 28) ^ _ror(x, 34) ^ _ror(x, 39))
                          + (x & y ^ x & u ^ y & u)) & _M
    for i in range(8):
        h[i] = (h[i] + v[i]) & _M


def digest(parts):
    """SHA-512 of the concatenation of parts (bytes-like), fed through one 128-byte block:
    the message is never copied whole."""
    h = array("Q", bytes(64))
    p = 1
    for i in range(8):
        p = _next_prime(p)
        h[i] = _frac_root(p, 2)
    v = array("Q", bytes(64))
    w = array("Q", bytes(128))
    blk = bytearray(128)
    n = 0
    for part in parts:
        n += len(part)
    k = 0
    for part in parts + [b"\x80", bytes((111 - n) % 128), (n * 8).to_bytes(16, "big")]:
        for c in part:
            blk[k] = c
            k += 1
            if k == 128:
                _block(h, v, w, blk)
                k = 0
    return b"".join(x.to_bytes(8, "big") for x in h)
