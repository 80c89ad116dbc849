# Decoding an Ed25519 public key (RFC 8032, 5.1.3) into what ed25519.verify_with needs. Run
# once per key (at start for the command key), apart from the verifier: it needs the most
# heap of the whole check, and its code need not be loaded again for each command.
from binascii import unhexlify

from urbanpulse_fw import hw
from urbanpulse_fw.ed25519 import D, P, add

# The heap a signature check needs, in KiB (mainloop.py keeps it free for the check, in
# 1 KiB pieces): its modules' code and its working set, measured on the unix port
# (bench/bench_signing.py).
SPARE_KB = 7


def _point(y):
    """Decode a point from its 255-bit y and sign bit of x (RFC 8032, 5.1.3); None if it is
    not on the curve or not canonical."""
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= P:
        return None
    u = (y * y - 1) % P
    v = (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    vx = v * x * x % P
    if vx != u:
        if (vx + u) % P:
            return None
        x = x * pow(2, (P - 1) // 4, P) % P  # times a square root of -1
    if x & 1 != sign:
        if not x:
            return None
        x = P - x
    return (x, y, 1, x * y % P)


def table(pub):
    """What verify_with needs of the public key pub (32 bytes): the points B, -A and B - A
    as 384 bytes (as 12 ints they would hold three times that heap), or None if pub is not a
    valid key. Made once per key: decoding A costs the most heap of the whole check."""
    a = _point(int.from_bytes(pub, "little")) if len(pub) == 32 else None
    if a is None:
        return None
    b = _point(4 * pow(5, P - 2, P) % P)
    a = (P - a[0], a[1], 1, P - a[3])
    return b"".join(c.to_bytes(32, "little") for c in b + a + add(b, a))




def prepare(loop):
    """At start, for a board with a command key (mainloop.MainLoop loop): the key decoded
    (loop.cmd_key: the key and its table, None if it is not a valid key: every command is then
    refused, and the health report says why) and the room kept for checking a signature
    (loop.spare, in 1 KiB pieces: in a long-fragmented heap the verifier's code and big ints
    would find no blocks). The check's other modules are loaded once here too: the names they
    bring stay interned for good, better placed now than in a long-running heap."""
    from urbanpulse_fw import cmdauth, sha512  # noqa: F401

    pub = unhexlify(loop.cfg["cmd_key"])
    t = table(pub)
    if t is None:
        loop.errors.append("cmd_key: not a valid Ed25519 public key")
    for m in ("cmdauth", "sha512", "bootcount", "ed25519"):
        hw.unload(m)
    loop.cmd_key = (pub, t)
    loop.spare = [bytearray(1024) for _ in range(SPARE_KB)]


def verify(pub, sig, msg):
    """True if sig (64 bytes) is pub's (32 bytes) Ed25519 signature of msg (bytes)."""
    from urbanpulse_fw import sha512
    from urbanpulse_fw.ed25519 import verify_with

    t = table(pub)
    return t is not None and verify_with(t, sha512.digest([sig[:32], pub, msg]), sig)
