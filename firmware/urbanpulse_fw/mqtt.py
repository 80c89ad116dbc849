# A small MQTT 3.1.1 client written for UrbanPulse boards.
#
# Single-threaded and poll-driven: the main loop calls poll() often and it never waits longer
# than the timeout it is given. QoS 0 and 1 only. A QoS 1 publish stays in flight until its
# PUBACK and goes out again, with DUP set, after ack_timeout_ms and after every reconnect:
# at-least-once delivery across broken connections.
#
# Four small modules (codec, connection, session, client) because MicroPython compiles a
# whole module at once, and compiling a big one does not fit beside the rest in 64 KiB.
from urbanpulse_fw import mqtt_codec as codec
from urbanpulse_fw.mqtt_codec import ConnectionLost, MQTTError  # also mqtt.MQTTError etc.
from urbanpulse_fw.mqtt_conn import Connection
from urbanpulse_fw.mqtt_session import Session

if False:  # for type checkers only: no typing module on the board
    from typing import Any


class Client(Session):
    conn_class = Connection  # tests put a fake transport here

    def __init__(self, client_id, host, port=1883, username=None, password=None, keepalive=30,
                 timeout_ms=5000, ack_timeout_ms=10000, max_packet=16384):
        Session.__init__(self, keepalive, timeout_ms, ack_timeout_ms)
        self.client_id = client_id
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.max_packet = max_packet
        self.will = None  # type: Any  # (topic, message, qos, retain)

    @property
    def connected(self):
        return self.conn is not None

    def set_last_will(self, topic, message, retain=False, qos=0):
        self.will = (topic, message, qos, retain)

    def connect(self, clean=True):
        """Connect and wait for CONNACK; raises MQTTError on any failure. Publishes still in
        flight are sent again with DUP set. Returns the session-present flag."""
        self.close()
        try:
            c = self.conn_class(self.host, self.port, self.timeout_ms, self.max_packet)
        except OSError as e:
            raise MQTTError("cannot reach %s:%d: %s" % (self.host, self.port, e))
        try:
            c.send(codec.connect_packet(self.client_id, self.keepalive, self.username,
                                        self.password, self.will, clean))
            p = c.read_packet(self.timeout_ms)
            if p is None:
                raise MQTTError("no CONNACK within %d ms" % self.timeout_ms)
            if p[0] != codec.CONNACK or len(p[1]) != 2:
                raise MQTTError("expected CONNACK, got packet type %d" % (p[0] >> 4))
            n = p[1][1]
            if n:
                r = codec.REFUSED
                raise MQTTError("refused: " + (r[n] if n < len(r) else "code %d" % n))
        except (OSError, MQTTError) as e:
            c.close()
            raise e if isinstance(e, MQTTError) else MQTTError("connect: %s" % e)
        self.conn = c
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
        head = codec.publish_header(topic, codec.payload_length(payload), qos, retain, pid)
        if qos:
            self._inflight.append([pid, head, payload, self._now()])
        if self.conn is None:
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
        if self.conn is None:
            raise ConnectionLost("not connected")
        pid = self._next_pid()
        try:
            self._send(codec.subscribe_packet(pid, topic, qos))
        except OSError as e:
            self._lost("send: %s" % e)
        return pid

    def disconnect(self):
        """Polite goodbye (the broker then drops the will). Safe when not connected."""
        if self.conn is not None and not self.conn.writing:
            try:
                self.conn.send(b"\xe0\x00")  # DISCONNECT
            except OSError:
                pass
        self.close()
