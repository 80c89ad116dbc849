# The board's own Ed25519 verifier and SHA-512 (urbanpulse_fw/sha512.py, ed25519.py,
# edkey.py) under MicroPython: the RFC 8032 (7.1) and FIPS 180-2 (SHA-512) test vectors,
# every kind of tampering refused, and non-canonical encodings (s >= L, y >= p, x = 0 with
# the sign bit) refused.
from binascii import unhexlify

from mpytest import eq
from urbanpulse_fw import ed25519, edkey, sha512

RFC8032 = (
    ("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e"
     "39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f"
     "3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67"
     "f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
)


def _vector(i):
    pub, msg, sig = RFC8032[i]
    return unhexlify(pub), unhexlify(sig), unhexlify(msg)


def test_sha512_known_answers():
    eq(sha512.digest([b"abc"]), unhexlify(
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"), "sha512(abc)")
    two_blocks = (b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
                  b"hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu")
    eq(sha512.digest([two_blocks[:50], memoryview(two_blocks)[50:]]), unhexlify(
        "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018"
        "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909"), "two blocks")
    eq(len(sha512.digest([b""])), 64, "empty message")


def test_rfc8032_signatures_verify():
    for i in range(len(RFC8032)):
        pub, sig, msg = _vector(i)
        eq(edkey.verify(pub, sig, msg), True, "RFC 8032 test %d" % (i + 1))


def test_tampering_is_refused():
    pub, sig, msg = _vector(1)
    eq(edkey.verify(pub, sig, msg + b"x"), False, "message changed")
    eq(edkey.verify(pub, sig, b""), False, "message dropped")
    for at in (0, 31, 32, 63):
        bad = bytearray(sig)
        bad[at] ^= 1
        eq(edkey.verify(pub, bytes(bad), msg), False, "signature byte %d" % at)
    other = _vector(2)[0]
    eq(edkey.verify(other, sig, msg), False, "another key")
    eq(edkey.verify(pub[:31], sig, msg), False, "short key")
    eq(edkey.verify(pub, sig[:63], msg), False, "short signature")


def test_non_canonical_encodings_are_refused():
    pub, sig, msg = _vector(0)
    s = int.from_bytes(sig[32:], "little")
    # s + L verifies as s would in a lax verifier: malleable, so refused.
    eq(edkey.verify(pub, sig[:32] + (s + ed25519.L).to_bytes(32, "little"), msg), False,
       "s >= L")
    # A key whose y is p + 1 (on the curve as y = 1) and the x = 0 point with its sign bit set.
    eq(edkey.verify((ed25519.P + 1).to_bytes(32, "little"), sig, msg), False, "y >= p")
    eq(edkey.verify((1 | 1 << 255).to_bytes(32, "little"), sig, msg), False, "-0")
    # y = 2 is not the y of any point on the curve.
    eq(edkey.verify((2).to_bytes(32, "little"), sig, msg), False, "not on the curve")
