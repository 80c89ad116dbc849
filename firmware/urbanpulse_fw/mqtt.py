# A small MQTT 3.1.1 client written for UrbanPulse boards: packet encoding (pure functions,
# testable on any port), one TCP connection to the broker, and the client's session.
#
# Single-threaded and poll-driven: the main loop calls poll() often and it never waits longer
# than the timeout it is given. QoS 0 and 1 only. A QoS 1 publish stays in flight until its
# PUBACK and goes out again, with DUP set, after ack_timeout_ms and after every reconnect:
# at-least-once delivery across broken connections.
#
# One module and one client class: on a 64 KiB heap every module, class and function object
# costs (boards run mpy-cross bytecode, so a big module need not be compiled on the board).
import select
import socket
import struct
import time

from urbanpulse_fw import SCRATCH

if False:  # for type checkers only: no typing module on the board, const() is the compiler's own
    from typing import Any  # noqa: F401  (used in type comments)

    from micropython import const

# First bytes (type << 4 | flags) of the packets a client reads.
_CONNACK = const(0x20)
_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBACK = const(0x90)
_DUP = const(0x08)  # PUBLISH flag: possibly a redelivery

_REFUSED = const(("", "unacceptable protocol version", "identifier rejected",
                  "server unavailable", "bad user name or password",
                  "not authorized"))  # CONNACK return codes 1..5


def resolve(host, port):
    """The address of host:port (DNS: blocks until answered or timed out)."""
    return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][-1]


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
    .size, .pieces and .piece(j) (streamed: no allocation the size of the message)."""
    if isinstance(payload, (list, tuple)):
        n = 0
        for b in payload:
            n += len(b)
        return n
    if hasattr(payload, "piece"):
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
    out = bytearray([_PUBLISH | qos << 1 | (1 if retain else 0) | (_DUP if dup else 0)])
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
    return topic, bytes(body[n:]), qos, bool(first & 1), bool(first & _DUP), pid


# Receive buffer: the package's scratch, allocated once (a reconnect on a long-running board's
# fragmented heap may not find 256 bytes in one piece).
_rmv = memoryview(SCRATCH)


class Client:
    """The session, over one TCP connection at a time (self.sock; None while offline): whole
    packets written, what arrives buffered and cut into packets. Packets bigger than
    max_packet are skipped unread (a huge retained message must not exhaust a small heap).
    One class, not a connection class besides: each class and function costs heap."""

    def __init__(self, client_id, host, port=1883, username=None, password=None, keepalive=30,
                 timeout_ms=5000, ack_timeout_ms=10000, max_packet=16384):
        self.keepalive = keepalive
        self.timeout_ms = timeout_ms  # socket operations, CONNACK, PINGRESP
        self.ack_timeout_ms = ack_timeout_ms
        self.on_message = None  # type: Any  # on_message(topic, payload, retain)
        self.on_puback = None  # type: Any  # on_puback(pid)
        self.on_suback = None  # type: Any  # on_suback(pid, granted bytes; 0x80 = refused)
        self.sock = None  # type: Any  # the socket while connected (TLS: the TLS layer)
        self.raw = None  # type: Any  # the TCP socket under it (TLS has no settimeout)
        self.tls = None  # type: Any  # TLS: (ssl.SSLContext, name the broker's certificate has)
        self.connected = False  # sock is not None (an attribute: a property costs heap)
        self.buf = b""  # received, not yet cut into packets
        self.skip = 0  # bytes of an oversized packet still to discard
        self.writing = False  # True while a packet is half written
        # One poller for the client's life, made now: a reconnect after a long outage (a
        # fragmented heap) need not find room for it.
        self.poller = select.poll()
        self._pid = 0
        self._inflight = []  # type: list  # [pid, header, payload, ticks last sent], oldest 1st
        self._last_tx = 0
        self._last_rx = 0
        self._ping_at = None  # type: Any  # ticks of the unanswered PINGREQ
        self.client_id = client_id
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.max_packet = max_packet
        self.will = None  # type: Any  # (topic, message, qos, retain)

    def set_last_will(self, topic, message, retain=False, qos=0):
        self.will = (topic, message, qos, retain)

    def _open(self, sockaddr):
        # A connected socket (tests put a scripted one here), over TLS with self.tls: the
        # handshake checks the broker's certificate against the city's CA and the name.
        s = self.raw = socket.socket()
        try:
            s.settimeout(self.timeout_ms / 1000)
            s.connect(sockaddr)
            if self.tls:
                s = self.tls[0].wrap_socket(s, server_hostname=self.tls[1])
        except Exception:
            self.raw.close()
            raise
        return s

    def _wait(self, timeout_ms):
        """True when input is ready within timeout_ms."""
        # register() again only updates the entry; ipoll() allocates no list of events.
        self.poller.register(self.sock, select.POLLIN)
        for _ in self.poller.ipoll(max(0, int(timeout_ms))):
            return True
        return False

    def _write(self, b):
        # A view of the rest only after a partial send: a send allocates nothing otherwise.
        while len(b):  # (an empty payload: nothing to send)
            n = self.sock.send(b)
            if not n:
                raise OSError("send returned %r" % (n,))
            if n >= len(b):
                return
            b = memoryview(b)[n:]

    def _send(self, data, payload=None):
        if self.writing:
            # A write was cut short (KeyboardInterrupt): the stream is out of step for good.
            raise OSError("stream broken by an interrupted write")
        self.writing = True
        self._write(data)
        if isinstance(payload, (list, tuple)):
            for b in payload:
                self._write(b)
        elif hasattr(payload, "piece"):
            for j in range(payload.pieces):
                self._write(payload.piece(j))
        elif payload is not None:
            self._write(payload)
        self.writing = False
        self._last_tx = self._now()

    def _receive(self):
        # Into a buffer allocated once, then only the bytes that came are copied: a long
        # running board's fragmented heap may not have a 256-byte block free for recv(256).
        # Non-blocking for the read only (readinto would wait to fill the whole buffer).
        s = self.sock
        s.setblocking(False)
        try:
            n = s.readinto(SCRATCH)
        finally:
            r = self.raw or s
            r.setblocking(True)
            r.settimeout(self.timeout_ms / 1000)
        if n is None:
            return  # nothing after all
        if not n:
            raise ConnectionLost("connection closed by broker")
        b = bytes(_rmv[:n])
        if self.skip:
            n = min(self.skip, len(b))
            self.skip -= n
            b = b[n:]
        if b:
            self.buf = self.buf + b if self.buf else b

    def _packet(self):
        """Take one complete packet (first byte, body) off the buffer, or None."""
        while True:
            b = self.buf
            r = decode_length(b) if len(b) > 1 else None
            if r is None:
                return None
            n = r[1] + r[0]  # end of the packet
            if r[0] <= self.max_packet:
                break
            self.skip = max(0, n - len(b))
            self.buf = b[n:]
        if len(b) < n:
            return None
        self.buf = b[n:]
        return b[0], b[r[1]:n]

    def connect(self, clean=True, addr=None):
        """Connect (to addr, else self.host resolved now) and wait for CONNACK; raises
        MQTTError on any failure. Publishes still in flight are sent again with DUP set.
        Returns the session-present flag."""
        self.close()
        try:
            self.sock = self._open(addr or resolve(self.host, self.port))
        except OSError as e:
            raise MQTTError(e)  # prints as the OSError; the caller knows where it tried
        except ValueError as e:  # the TLS handshake refused the broker's certificate
            raise MQTTError("tls: " + str(e).strip())
        self.buf = b""
        self.skip = 0
        self.writing = False
        try:
            self._send(connect_packet(self.client_id, self.keepalive, self.username,
                                      self.password, self.will, clean))
            t = time.ticks_add(time.ticks_ms(), self.timeout_ms)
            p = self._packet()
            while p is None:
                n = time.ticks_diff(t, time.ticks_ms())
                if n <= 0 or not self._wait(n):
                    break
                self._receive()
                p = self._packet()
            if p is None:
                raise MQTTError("no CONNACK within %d ms" % self.timeout_ms)
            if p[0] != _CONNACK or len(p[1]) != 2:
                raise MQTTError("expected CONNACK, got packet type %d" % (p[0] >> 4))
            n = p[1][1]
            if n:
                r = _REFUSED
                raise MQTTError("refused: " + (r[n] if n < len(r) else "code %d" % n))
        except (OSError, MQTTError) as e:
            self.close()
            raise e if isinstance(e, MQTTError) else MQTTError("connect: %s" % e)
        self.connected = True
        self._last_rx = self._last_tx = self._now()
        try:
            for x in self._inflight:
                self._resend(x)
        except OSError as e:
            self._lost("send: %s" % e)
        return bool(p[1][0] & 1)

    def publish(self, topic, payload, qos=0, retain=False):
        """Send a PUBLISH; returns its packet id (0 for QoS 0). A QoS 1 message is kept until
        PUBACKed even if sending fails or the client is offline: it goes out on the next
        connect. QoS 0 raises ConnectionLost instead."""
        if qos not in (0, 1):
            raise ValueError("QoS 0 or 1 only")
        pid = self._next_pid() if qos else 0
        head = publish_header(topic, payload_length(payload), qos, retain, pid)
        if qos:
            self._inflight.append([pid, head, payload, self._now()])
        if not self.connected:
            if qos:
                return pid
            raise ConnectionLost("not connected")
        try:
            self._send(head, payload)
        except OSError as e:
            self.close()
            if not qos:
                raise ConnectionLost("send: %s" % e)
        return pid

    def subscribe(self, topic, qos=0):
        if qos not in (0, 1):
            raise ValueError("QoS 0 or 1 only")
        if not self.connected:
            raise ConnectionLost("not connected")
        pid = self._next_pid()
        try:
            b = struct.pack("!H", pid) + encode_str(topic) + bytes([qos])
            # SUBSCRIBE; its reserved flags must be 0010.
            self._send(b"\x82" + encode_length(len(b)) + b)
        except OSError as e:
            self._lost("send: %s" % e)
        return pid

    def disconnect(self):
        """Polite goodbye (the broker then drops the will). Safe when not connected."""
        if self.connected and not self.writing:
            try:
                self._send(b"\xe0\x00")  # DISCONNECT
            except OSError:
                pass
        self.close()

    def _now(self):
        return time.ticks_ms()

    def poll(self, timeout_ms=0):
        """Wait up to timeout_ms for input, handle all complete packets, send keepalive pings
        and retries. Raises ConnectionLost when the connection is gone or stopped answering.
        (One long function: each function object costs heap on a 64 KiB board.)"""
        if not self.connected:
            raise ConnectionLost("not connected")
        try:
            if self._wait(timeout_ms):
                for _ in range(8):  # bounded: a flood of input must not starve the main loop
                    self._receive()
                    p = self._packet()
                    while p is not None:
                        first, body = p
                        self._last_rx = self._now()
                        self._ping_at = None  # any packet shows the connection is alive
                        kind = first & 0xF0
                        if kind == _PUBACK:
                            pid = struct.unpack("!H", body[0:2])[0]
                            for i in range(len(self._inflight)):
                                if self._inflight[i][0] == pid:
                                    self._inflight.pop(i)
                                    if self.on_puback:
                                        self.on_puback(pid)
                                    break
                        elif kind == _PUBLISH:
                            p = parse_publish(first, body)
                            if p[2] == 1:
                                self._send(b"\x40\x02" + struct.pack("!H", p[5]))  # PUBACK
                            if self.on_message:
                                self.on_message(p[0], p[1], p[3])
                        elif kind == _SUBACK and self.on_suback:
                            self.on_suback(struct.unpack("!H", body[0:2])[0], bytes(body[2:]))
                        # PINGRESP needs nothing more; other types are not sent to a client.
                        p = self._packet()
                    if not self._wait(0):
                        break
            now = self._now()
            if self._ping_at is not None:
                if time.ticks_diff(now, self._ping_at) > self.timeout_ms:
                    self._lost("no PINGRESP within %d ms" % self.timeout_ms)
            elif self.keepalive:
                n = self.keepalive * 1000
                # Ping well within the broker's 1.5 x keepalive limit, and also when the broker
                # has been silent a whole period: that finds a dead link even while we keep
                # sending.
                if (time.ticks_diff(now, self._last_tx) >= n // 2
                        or time.ticks_diff(now, self._last_rx) >= n):
                    self._send(b"\xc0\x00")  # PINGREQ
                    self._ping_at = now
            for e in self._inflight:
                if time.ticks_diff(now, e[3]) >= self.ack_timeout_ms:
                    self._resend(e)
        except OSError as e:
            self._lost("socket: %s" % e)
        except ConnectionLost:
            self.close()
            raise

    def inflight(self):
        """Packet ids of QoS 1 publishes not yet acknowledged, oldest first."""
        out = []  # (a loop: a comprehension would be one more function object)
        for e in self._inflight:
            out.append(e[0])
        return out

    def close(self):
        if self.sock is not None:
            self.poller.unregister(self.sock)  # (no error if it was not registered)
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = self.raw = None
        self.connected = False
        self._ping_at = None

    def _lost(self, reason):
        self.close()
        raise ConnectionLost(reason)

    def _next_pid(self):
        pid = self._pid
        while True:
            pid = pid % 65535 + 1  # 1..65535, never 0
            for e in self._inflight:
                if e[0] == pid:
                    break
            else:
                self._pid = pid
                return pid

    def _resend(self, e):
        e[1][0] |= _DUP
        e[3] = self._now()
        self._send(e[1], e[2])
