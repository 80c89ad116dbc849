# Sent by `urbanpulse flash` to the board over mpremote with a call of walk("") appended: every
# file with its size and SHA-256, one "F size hexdigest path" line each, to verify the copy.
import binascii
import hashlib
import os


def walk(d: str) -> None:
    for e in os.ilistdir(d or "."):
        p = d + "/" + e[0] if d else e[0]
        if e[1] == 0x4000:
            walk(p)
            continue
        h = hashlib.sha256()
        n = 0
        with open(p, "rb") as f:
            while True:
                b = f.read(512)
                if not b:
                    break
                n += len(b)
                h.update(b)
        print("F", n, binascii.hexlify(h.digest()).decode(), p)
