# MQTT 3.1.1 packet encoding and decoding: pure functions, no I/O (testable on any port).
import struct

# First bytes (type << 4 | flags) of the packets a client reads.
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
SUBACK = 0x90
DUP = 0x08  # PUBLISH flag: possibly a redelivery

REFUSED = ("", "unacceptable protocol version", "identifier rejected", "server unavailable",
           "bad user name or password", "not authorized")  # CONNACK return codes 1..5


class MQTTError(Exception):
    pass


class ConnectionLost(MQTTError):
    pass


def encode_length(n):
    """The 'remaining length': 7 bits per byte, least significant group first."""
    if not 0 <= n <= 268435455:
        raise ValueError("remaining length out of range: %d" % n)
    b = bytearray()
    while n > 127:
        b.append(n & 0x7F | 0x80)
        n >>= 7
    b.append(n)
    return bytes(b)


def decode_length(b, i=1):
    """Decode a remaining length starting at b[i]: (length, index after it), or None when b
    ends inside the field. MQTTError if it is longer than 4 bytes."""
    n = 0
    for k in range(4):
        if i + k >= len(b):
            return None
        n |= (b[i + k] & 0x7F) << (7 * k)
        if b[i + k] < 0x80:
            return n, i + k + 1
    raise MQTTError("malformed remaining length")


def encode_str(s):
    if isinstance(s, str):
        s = s.encode()
    if len(s) > 65535:
        raise ValueError("string longer than 65535 bytes")
    return struct.pack("!H", len(s)) + s


def payload_length(payload):
    """A payload is bytes, a list of byte strings sent one after the other, or an object with
    .size and .chunks() (streamed: no allocation the size of the message)."""
    if isinstance(payload, (list, tuple)):
        n = 0
        for b in payload:
            n += len(b)
        return n
    if hasattr(payload, "chunks"):
        return payload.size
    return len(payload)


def connect_packet(client_id, keepalive=60, username=None, password=None, will=None,
                   clean=True):
    """CONNECT; will is (topic, message, qos, retain) or None."""
    flags = 2 if clean else 0
    b = encode_str(client_id)
    if will:
        flags |= 4 | will[2] << 3 | (0x20 if will[3] else 0)
        b += encode_str(will[0]) + encode_str(will[1])
    if username is not None:
        flags |= 0x80
        b += encode_str(username)
        if password is not None:
            flags |= 0x40
            b += encode_str(password)
    elif password is not None:
        raise ValueError("MQTT 3.1.1 allows a password only with a user name")
    # Protocol name "MQTT", level 4 (= 3.1.1), connect flags, keepalive.
    b = b"\x00\x04MQTT\x04" + bytes([flags]) + struct.pack("!H", keepalive) + b
    return b"\x10" + encode_length(len(b)) + b


def publish_header(topic, n, qos=0, retain=False, pid=0, dup=False):
    """Fixed and variable header of a PUBLISH with an n-byte payload (a bytearray: a retry
    sets DUP in place)."""
    b = encode_str(topic)
    if qos:
        b += struct.pack("!H", pid)
    out = bytearray([PUBLISH | qos << 1 | (1 if retain else 0) | (DUP if dup else 0)])
    out += encode_length(len(b) + n)
    out += b
    return out


def parse_publish(first, body):
    """(topic, payload, qos, retain, dup, pid) of a PUBLISH from its first byte and body."""
    qos = first >> 1 & 3
    n = struct.unpack("!H", body[0:2])[0] + 2
    topic = bytes(body[2:n]).decode()
    pid = 0
    if qos:
        pid = struct.unpack("!H", body[n:n + 2])[0]
        n += 2
    return topic, bytes(body[n:]), qos, bool(first & 1), bool(first & DUP), pid


def subscribe_packet(pid, topic, qos=0):
    b = struct.pack("!H", pid) + encode_str(topic) + bytes([qos])
    return b"\x82" + encode_length(len(b)) + b  # SUBSCRIBE's reserved flags must be 0010


def puback_packet(pid):
    return b"\x40\x02" + struct.pack("!H", pid)
