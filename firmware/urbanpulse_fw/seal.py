# Sealed telemetry, CONTRACT.md v2: a board with a device key ("device_key") ends each
# telemetry message with
#   ],"prev":"<SHA-256 of the previous sealed message>","mac":"<HMAC-SHA256 of the rest>"}
# The MAC covers the message's bytes without its "mac" member (P + "}"); "prev" chains every
# message to the one sealed before it, across reboots and deep sleep.
#
# The chain's head lives in flash (file "chain", with a tag of the key: provisioning gives
# the board a new key, and a new key starts a new chain at genesis), written before the
# message is published:
# a board that resets links its next message to the last one it may have sent. Beside the
# head, the file keeps the envelope of that message (boot, seq, samples, prev, mac): if the
# message was not acknowledged, its samples are at the front of the flash spool after a clean
# stop (telemetry.Outbox.spill), and the next start sends it again byte for byte (the bytes
# are checked against the head). A redelivery is then the same message, not a new one.
#
# The HMAC is written here (no hmac module on the board); SHA-256 is the port's hashlib.
from binascii import hexlify, unhexlify
from hashlib import sha256

from urbanpulse_fw.spool import swap

PATH = "chain"
# ],"prev":" + 64 hex + ","mac":" + 64 hex + "}: the message's last piece.
TAIL = 149
_MAC_AT = 83


class Seal:
    def __init__(self, device_id, key_hex, path=PATH):
        k = unhexlify(key_hex)
        ipad = bytearray(64)
        opad = bytearray(64)
        for i in range(64):
            b = k[i] if i < len(k) else 0
            ipad[i] = b ^ 0x36
            opad[i] = b ^ 0x5C
        self.ipad = ipad
        self.opad = opad
        self.path = path
        # The last piece of the message in flight, filled in place: one buffer for good.
        t = self.tail = bytearray(TAIL)
        t[0:10] = b'],"prev":"'
        t[74:83] = b'","mac":"'
        t[147:149] = b'"}'
        self.head = hexlify(sha256(b"genesis:" + device_id.encode()).digest())
        self.tag = hexlify(sha256(k).digest()[:4])
        self.pending = None  # type: list | None  # [boot, seq, samples, prev, mac] in flash
        try:
            with open(path) as f:
                head = f.readline().split()
                rest = f.readline().split()
            if len(head) == 2 and len(head[0]) == 64 and head[1] == self.tag.decode():
                self.head = head[0].encode()
            else:
                rest = []  # another key's chain, or none
            if len(rest) == 5:
                self.pending = [int(rest[0]), int(rest[1]), int(rest[2]),
                                rest[3].encode(), rest[4].encode()]
        except (OSError, ValueError):
            pass  # none yet: the chain starts at genesis

    def _hash(self, msg, mac):
        # SHA-256 of the whole message; with mac, also its MAC (the HMAC's inner hash runs
        # alongside: the samples are read once).
        t = self.tail
        whole = sha256()
        inner = sha256(self.ipad) if mac else None
        for j in range(msg.pieces - 1):
            p = msg.piece(j)
            whole.update(p)
            if inner:
                inner.update(p)
        if inner:
            mv = memoryview(t)
            inner.update(mv[0:75])
            inner.update(b"}")
            outer = sha256(self.opad)
            outer.update(inner.digest())
            t[_MAC_AT:_MAC_AT + 64] = hexlify(outer.digest())
        whole.update(t)
        return hexlify(whole.digest())

    def seal(self, msg):
        """Seal the message (its last piece is self.tail) and move the chain's head to it, in
        flash, before it is published."""
        t = self.tail
        prev = self.head
        t[10:74] = prev
        head = self._hash(msg, True)
        # Written piece by piece: no string the size of the record (this runs per message).
        with open(self.path + ".tmp", "wb") as f:
            f.write(head)
            f.write(b" ")
            f.write(self.tag)
            f.write(b"\n%d %d %d " % (msg.boot, msg.seq, msg.count))
            f.write(prev)
            f.write(b" ")
            f.write(memoryview(t)[_MAC_AT:_MAC_AT + 64])
            f.write(b"\n")
        swap(self.path)
        self.head = head
        self.pending = None

    def resume(self, msg):
        """The message left in flight by the last start, rebuilt from the spool with its own
        envelope (msg: its boot, seq and samples, as pending says): True if its bytes are the
        ones sealed then (send it as it is), False if not (the spool no longer holds them)."""
        p = self.pending
        self.pending = None
        if p is None:
            return False
        t = self.tail
        t[10:74] = p[3]
        t[_MAC_AT:_MAC_AT + 64] = p[4]
        return self._hash(msg, False) == self.head
