# Ed25519 signature verification (RFC 8032, 5.1.7), the curve arithmetic: the hash comes
# from sha512.py, loaded and unloaded before this module (a signature check never holds both
# on the heap), and the public key's decoding from edkey.py (once per key).
#
# Not constant-time, and it needs not be: only public values (the command key, the message,
# the signature) go through it. Points are extended twisted-Edwards coordinates (X, Y, Z, T)
# with one unified, complete addition formula (add-2008-hwcd-3), used for doubling too: one
# function object instead of two.

P = (1 << 255) - 19
L = (1 << 252) + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P


def add(a, b):
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    pa = (y1 - x1) * (y2 - x2) % P
    pb = (y1 + x1) * (y2 + x2) % P
    pc = 2 * D * t1 * t2 % P
    pd = 2 * z1 * z2 % P
    e = pb - pa
    f = pd - pc
    g = pd + pc
    h = pb + pa
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def verify_with(table, digest, sig):
    """True if sig (64 bytes) is the Ed25519 signature whose SHA-512(R || A || M) is digest,
    by the key whose edkey.table is table."""
    s = int.from_bytes(sig[32:], "little")
    if len(sig) != 64 or s >= L:
        return False
    h = int.from_bytes(digest, "little") % L
    # [s]B - [h]A must encode to R: Straus' method, one pass over both scalars' bits.
    q = (0, 1, 1, 0)
    for i in range(252, -1, -1):
        q = add(q, q)
        k = ((s >> i & 1) | (h >> i & 1) << 1) * 128 - 128
        if k >= 0:
            q = add(q, [int.from_bytes(table[j:j + 32], "little")
                        for j in range(k, k + 128, 32)])
    z = pow(q[2], P - 2, P)
    return q[1] * z % P | (q[0] * z % P & 1) << 255 == int.from_bytes(sig[:32], "little")
