# MQTT 3.1.1 packet encoding and decoding (urbanpulse_fw.mqtt).
import struct

from mpytest import eq, raises
from urbanpulse_fw import mqtt as codec


def test_remaining_length_edges():
    # The boundaries where the encoding grows by a byte (MQTT 3.1.1, 2.2.3).
    cases = (
        (0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16383, b"\xff\x7f"),
        (16384, b"\x80\x80\x01"), (2097151, b"\xff\xff\x7f"), (2097152, b"\x80\x80\x80\x01"),
        (268435455, b"\xff\xff\xff\x7f"),
    )
    for n, enc in cases:
        eq(codec.encode_length(n), enc, "encode %d" % n)
        eq(codec.decode_length(b"\x30" + enc), (n, 1 + len(enc)), "decode %d" % n)


def test_remaining_length_round_trip_64k_and_beyond():
    for n in (1, 200, 1000, 65535, 65536, 70000, 100000, 1 << 20):
        enc = codec.encode_length(n)
        eq(codec.decode_length(enc, 0), (n, len(enc)), "round trip %d" % n)


def test_remaining_length_out_of_range():
    raises(ValueError, codec.encode_length, -1)
    raises(ValueError, codec.encode_length, 268435456)


def test_remaining_length_incomplete_and_malformed():
    eq(codec.decode_length(b"\x30"), None, "no length byte yet")
    eq(codec.decode_length(b"\x30\x80"), None, "continuation pending")
    eq(codec.decode_length(b"\x30\xff\xff\xff"), None, "3 of 4 bytes")
    raises(codec.MQTTError, codec.decode_length, b"\x30\xff\xff\xff\xff\x01")


def test_connect_with_will_and_credentials():
    pkt = codec.connect_packet("air-n-001", 30, "user", "pw",
                               ("city/air-n-001/status", b'{"state":"offline"}', 1, True), True)
    eq(pkt[0], 0x10, "packet type")
    n, start = codec.decode_length(pkt)
    eq(len(pkt) - start, n, "remaining length")
    body = pkt[start:]
    eq(body[:7], b"\x00\x04MQTT\x04", "protocol name and level 4")
    # user name, password, will retain, will QoS 1, will flag, clean session
    eq(body[7], 0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02, "connect flags")
    eq(struct.unpack("!H", body[8:10])[0], 30, "keepalive")
    want = (codec.encode_str("air-n-001") + codec.encode_str("city/air-n-001/status")
            + codec.encode_str(b'{"state":"offline"}') + codec.encode_str("user")
            + codec.encode_str("pw"))
    eq(body[10:], want, "payload order: client id, will topic, will message, user, password")


def test_connect_minimal_flags():
    pkt = codec.connect_packet("dev", 0)
    eq(pkt, b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x00\x00\x03dev", "clean session only")
    pkt = codec.connect_packet("dev", 60, clean=False)
    eq(pkt[9], 0, "no flags")
    eq(pkt[10:12], b"\x00\x3c", "keepalive 60")
    # Will at QoS 0 without retain; user name only.
    pkt = codec.connect_packet("dev", 60, "u", None, ("t", b"x", 0, False))
    eq(pkt[9], 0x80 | 0x04 | 0x02, "user + will + clean")


def test_connect_password_needs_user():
    raises(ValueError, codec.connect_packet, "dev", 30, None, "pw")


def test_publish_qos1_header_packet_id_and_dup():
    h = codec.publish_header("a/b", 5, qos=1, retain=False, pid=0x1234)
    eq(bytes(h), b"\x32\x0c\x00\x03a/b\x12\x34", "QoS 1 header with packet id")
    h = codec.publish_header("a/b", 5, qos=1, retain=True, pid=7, dup=True)
    eq(h[0], 0x30 | 0x08 | 0x02 | 0x01, "DUP + QoS 1 + retain")
    eq(bytes(h[-2:]), b"\x00\x07", "packet id")
    h = codec.publish_header("a/b", 5)
    eq(bytes(h), b"\x30\x0a\x00\x03a/b", "QoS 0: no packet id")


def test_publish_header_big_payload():
    h = codec.publish_header("t", 70000, qos=1, pid=1)
    n, start = codec.decode_length(h)
    eq(n, 70000 + 3 + 2, "remaining length counts topic, id and payload")
    eq(start, 4, "3 length bytes above 16383")


def test_parse_publish_round_trip():
    for qos in (0, 1):
        for retain in (False, True):
            pkt = bytes(codec.publish_header("city/x/cmd", 4, qos, retain, 99, qos == 1)) + b"ping"
            _n, start = codec.decode_length(pkt)
            got = codec.parse_publish(pkt[0], pkt[start:])
            eq(got, ("city/x/cmd", b"ping", qos, retain, qos == 1, 99 if qos else 0), "parse")


def test_payload_length_of_parts():
    eq(codec.payload_length(b"abc"), 3, "bytes")
    eq(codec.payload_length([b"ab", b"", b"cde"]), 5, "parts")


def test_encode_str_limits():
    eq(codec.encode_str(""), b"\x00\x00", "empty")
    eq(codec.encode_str("\u00e9"), b"\x00\x02\xc3\xa9", "UTF-8 length, not characters")
    raises(ValueError, codec.encode_str, b"x" * 65536)
