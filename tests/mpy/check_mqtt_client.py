# The MQTT client's protocol logic against a scripted fake transport and a fake clock:
# CONNACK handling, PUBACK tracking, DUP retries, packet ids, keepalive, dead links.
from mpytest import encode_sample, eq, payload, raises
from urbanpulse_fw import mqtt

codec = mqtt  # the packet functions (one module with the client)

CONNACK_OK = b"\x20\x02\x00\x00"


class FakeSock:
    """Bytes the 'broker' will send (rx, in chunks) and bytes the client sent (tx)."""

    def __init__(self, *chunks):
        self.rx = list(chunks)
        self.tx = b""
        self.eof = False
        self.closed = False

    def send(self, data):
        self.tx += bytes(data)
        return len(data)

    def recv(self, n):
        if self.rx:
            chunk = self.rx.pop(0)
            if len(chunk) > n:
                self.rx.insert(0, chunk[n:])
                chunk = chunk[:n]
            return chunk
        if self.eof:
            return b""
        raise OSError(11)  # EAGAIN

    def readinto(self, buf):
        # What the connection uses (non-blocking): None when nothing is there.
        try:
            chunk = self.recv(len(buf))
        except OSError:
            return None
        buf[:len(chunk)] = chunk
        return len(chunk)

    def setblocking(self, flag):
        pass

    def settimeout(self, t):
        pass

    def close(self):
        self.closed = True

    def packets(self):
        """Split what the client sent into (first byte, body) and forget it."""
        out = []
        buf = self.tx
        while buf:
            n, start = codec.decode_length(buf)
            out.append((buf[0], buf[start:start + n]))
            buf = buf[start + n:]
        self.tx = b""
        return out


class FakeConnection:
    next_sock = None  # the socket the next connection gets


class TestClient(mqtt.Client):
    def _open(self, addr):
        return FakeConnection.next_sock

    def _wait(self, timeout_ms):
        return bool(self.sock.rx) or self.sock.eof

    def __init__(self, *args, **kwargs):
        mqtt.Client.__init__(self, *args, **kwargs)
        self.t = 1000
        self.acked = []
        self.messages = []
        self.on_puback = self.acked.append
        self.on_message = lambda topic, payload, retain: self.messages.append(
            (topic, payload, retain))

    def _now(self):
        return self.t


def connected_client(**kwargs):
    sock = FakeSock(CONNACK_OK)
    FakeConnection.next_sock = sock
    c = TestClient("dev-1", "127.0.0.1", **kwargs)
    c.set_last_will("city/dev-1/status", b'{"state":"offline"}', retain=True, qos=1)
    c.connect()
    return c, sock


def test_connect_sends_connect_with_will():
    c, sock = connected_client(keepalive=30)
    pkts = sock.packets()
    eq(len(pkts), 1, "one packet")
    first, body = pkts[0]
    eq(first, 0x10, "CONNECT")
    eq(body[7], 0x20 | 0x08 | 0x04 | 0x02, "will retain, will QoS 1, will, clean session")
    assert c.connected


def test_connack_refused_names_reason():
    FakeConnection.next_sock = FakeSock(b"\x20\x02\x00\x05")
    c = TestClient("dev-1", "127.0.0.1")
    e = raises(mqtt.MQTTError, c.connect)
    assert "not authorized" in str(e), str(e)
    assert not c.connected
    assert FakeConnection.next_sock.closed


def test_no_connack_is_an_error():
    FakeConnection.next_sock = FakeSock()
    c = TestClient("dev-1", "127.0.0.1", timeout_ms=50)
    e = raises(mqtt.MQTTError, c.connect)
    assert "CONNACK" in str(e), str(e)


def test_connack_split_over_reads():
    FakeConnection.next_sock = FakeSock(b"\x20", b"\x02\x01", b"\x00")
    c = TestClient("dev-1", "127.0.0.1")
    eq(c.connect(), True, "session present flag")


def test_qos1_publish_tracked_until_puback():
    c, sock = connected_client()
    sock.packets()
    pid = c.publish("city/dev-1/telemetry", [b"{", b'"a":1', b"}"], qos=1)
    eq(pid, 1, "first packet id")
    eq(c.inflight(), [1], "in flight")
    first, body = sock.packets()[0]
    eq(first, 0x32, "QoS 1, no DUP")
    eq(codec.parse_publish(first, body)[1], b'{"a":1}', "payload parts sent in order")
    sock.rx.append(bytes((0x40, 2, pid >> 8, pid & 255)))  # PUBACK
    c.poll(0)
    eq(c.inflight(), [], "acknowledged")
    eq(c.acked, [1], "on_puback called")


def test_unacked_publish_retried_with_dup_after_timeout():
    c, sock = connected_client(ack_timeout_ms=5000)
    sock.packets()
    pid = c.publish("t", b"x", qos=1)
    sock.packets()
    c.t += 4999
    c.poll(0)
    eq(sock.packets(), [], "not yet")
    c.t += 1
    c.poll(0)
    pkts = sock.packets()
    eq(len(pkts), 1, "one retry")
    first, body = pkts[0]
    eq(first, 0x3A, "QoS 1 with DUP")
    eq(codec.parse_publish(first, body), ("t", b"x", 1, False, True, pid), "same id and payload")


def test_inflight_resent_with_dup_after_reconnect():
    c, sock = connected_client()
    pid = c.publish("t", b"kept", qos=1)
    sock.eof = True
    raises(mqtt.ConnectionLost, c.poll, 0)
    assert not c.connected
    # Published while offline: queued, not lost.
    pid2 = c.publish("t", b"later", qos=1)
    raises(mqtt.ConnectionLost, c.publish, "t", b"q0", 0)
    sock2 = FakeSock(CONNACK_OK)
    FakeConnection.next_sock = sock2
    c.connect()
    pkts = sock2.packets()
    eq([p[0] for p in pkts], [0x10, 0x3A, 0x3A], "CONNECT then both with DUP")
    eq(codec.parse_publish(pkts[1][0], pkts[1][1])[5], pid, "oldest first")
    eq(codec.parse_publish(pkts[2][0], pkts[2][1])[1], b"later", "then the queued one")
    eq(pid2, pid + 1, "next id")


def test_packet_ids_skip_inflight_and_wrap():
    c, _sock = connected_client()
    c._pid = 65534
    eq(c.publish("t", b"", qos=1), 65535, "last id")
    eq(c.publish("t", b"", qos=1), 1, "wraps to 1, never 0")
    c._pid = 65534
    eq(c.publish("t", b"", qos=1), 2, "skips ids still in flight")
    eq(c.publish("t", b"", qos=0), 0, "QoS 0 has no id")


def test_keepalive_ping_and_pong():
    c, sock = connected_client(keepalive=10)
    sock.packets()
    c.t += 4999
    c.poll(0)
    eq(sock.packets(), [], "quiet before half the keepalive")
    c.t += 1
    c.poll(0)
    eq(sock.packets(), [(0xC0, b"")], "PINGREQ")
    sock.rx.append(b"\xd0\x00")
    c.t += 100
    c.poll(0)
    assert c.connected
    c.t += 4000
    c.poll(0)
    eq(sock.packets(), [], "no second ping while the link is fresh")


def test_dead_link_detected_by_missing_pingresp():
    c, sock = connected_client(keepalive=10, timeout_ms=3000)
    c.t += 5000
    c.poll(0)
    c.t += 3001
    e = raises(mqtt.ConnectionLost, c.poll, 0)
    assert "PINGRESP" in str(e), str(e)
    assert sock.closed and not c.connected


def test_broker_closing_is_connection_lost():
    c, sock = connected_client()
    sock.eof = True
    raises(mqtt.ConnectionLost, c.poll, 0)
    raises(mqtt.ConnectionLost, c.poll, 0)  # and stays lost until connect()


def test_incoming_qos1_publish_is_acked_and_delivered():
    c, sock = connected_client()
    sock.packets()
    pkt = bytes(codec.publish_header("city/dev-1/cmd", 4, 1, False, 0x0102)) + b"ping"
    sock.rx.append(pkt[:5])  # split across reads
    sock.rx.append(pkt[5:] + b"\xd0\x00")
    c.poll(0)
    eq(c.messages, [("city/dev-1/cmd", b"ping", False)], "delivered")
    eq(sock.packets(), [(0x40, b"\x01\x02")], "PUBACK with the same id")


def test_oversized_packet_skipped():
    c, sock = connected_client(max_packet=100)
    big = bytes(codec.publish_header("big", 500)) + b"z" * 500
    small = bytes(codec.publish_header("small", 2)) + b"ok"
    sock.rx.extend([big[:300], big[300:] + small])
    c.poll(0)
    eq(c.messages, [("small", b"ok", False)], "big one skipped, next one intact")


def test_subscribe_packet():
    c, sock = connected_client()
    sock.packets()
    c._pid = 9
    eq(c.subscribe("city/a/cmd", 1), 10, "next packet id")
    eq(sock.tx, b"\x82\x0f\x00\x0a\x00\x0acity/a/cmd\x01", "SUBSCRIBE, reserved flags 0010")


def test_suback_reported():
    c, sock = connected_client()
    got = []
    c.on_suback = lambda pid, granted: got.append((pid, granted))
    pid = c.subscribe("city/dev-1/cmd", 1)
    first, _body = sock.packets()[-1]
    eq(first, 0x82, "SUBSCRIBE")
    sock.rx.append(b"\x90\x03" + bytes([0, pid]) + b"\x01")
    c.poll(0)
    eq(got, [(pid, b"\x01")], "granted QoS 1")


def test_disconnect_sends_disconnect_and_closes():
    c, sock = connected_client()
    sock.packets()
    c.disconnect()
    eq(sock.packets(), [(0xE0, b"")], "DISCONNECT")
    assert sock.closed and not c.connected
    c.disconnect()  # harmless when already closed


def test_interrupted_write_breaks_the_stream():
    c, sock = connected_client()
    c.writing = True  # as if a KeyboardInterrupt hit in the middle of a send
    sock.packets()
    c.disconnect()
    eq(sock.packets(), [], "no DISCONNECT into a broken stream")
    assert sock.closed


def test_streamed_payload_object():
    # The telemetry Message is written chunk by chunk; the header announces its full size.
    from urbanpulse_fw import telemetry

    ob = telemetry.Outbox(5, max_samples=10)
    for i in range(4):
        ob.add(encode_sample(1763700000000 + i, [("laeq", 50.5)]))
    msg = ob.take()
    c, sock = connected_client()
    sock.packets()
    c.publish("city/dev-1/telemetry", msg, qos=1)
    first, body = sock.packets()[0]
    eq(codec.parse_publish(first, body)[1], payload(msg), "streamed payload")
    eq(codec.payload_length(msg), len(payload(msg)), "payload_length of a streamed object")
