# The receiving half of the MQTT client: handles what the broker sends, keepalive pings,
# retries of unacknowledged publishes and dead-link detection. mqtt.Client builds on it (two
# modules because MicroPython compiles a whole module at once and a 64 KiB heap is small).
import struct
import time

if False:  # for type checkers only: no typing module on the board
    from typing import Any

from urbanpulse_fw import mqtt_codec as codec
from urbanpulse_fw.mqtt_codec import ConnectionLost


class Session:
    def __init__(self, keepalive, timeout_ms, ack_timeout_ms):
        self.keepalive = keepalive
        self.timeout_ms = timeout_ms  # socket operations, CONNACK, PINGRESP
        self.ack_timeout_ms = ack_timeout_ms
        self.on_message = None  # type: Any  # on_message(topic, payload, retain)
        self.on_puback = None  # type: Any  # on_puback(pid)
        self.on_suback = None  # type: Any  # on_suback(pid, granted bytes; 0x80 = refused)
        self.conn = None  # type: Any  # an mqtt_conn.Connection while connected
        self._pid = 0
        self._inflight = []  # type: list  # [pid, header, payload, ticks last sent], oldest 1st
        self._last_tx = 0
        self._last_rx = 0
        self._ping_at = None  # type: Any  # ticks of the unanswered PINGREQ

    def _now(self):
        return time.ticks_ms()

    def poll(self, timeout_ms=0):
        """Wait up to timeout_ms for input, handle all complete packets, send keepalive pings
        and retries. Raises ConnectionLost when the connection is gone or stopped answering."""
        c = self.conn
        if c is None:
            raise ConnectionLost("not connected")
        try:
            if c.wait(timeout_ms):
                for _ in range(8):  # bounded: a flood of input must not starve the main loop
                    c.receive()
                    p = c.packet()
                    while p is not None:
                        self._handle(p[0], p[1])
                        p = c.packet()
                    if not c.wait(0):
                        break
            self._housekeeping()
        except OSError as e:
            self._lost("socket: %s" % e)
        except ConnectionLost:
            self.close()
            raise

    def inflight(self):
        """Packet ids of QoS 1 publishes not yet acknowledged, oldest first."""
        return [e[0] for e in self._inflight]

    def close(self):
        if self.conn is not None:
            self.conn.close()
        self.conn = None
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

    def _send(self, data, payload=None):
        self.conn.send(data, payload)
        self._last_tx = self._now()

    def _resend(self, e):
        e[1][0] |= codec.DUP
        e[3] = self._now()
        self._send(e[1], e[2])

    def _handle(self, first, body):
        self._last_rx = self._now()
        self._ping_at = None  # any packet shows the connection is alive
        kind = first & 0xF0
        if kind == codec.PUBACK:
            pid = struct.unpack("!H", body[0:2])[0]
            for i in range(len(self._inflight)):
                if self._inflight[i][0] == pid:
                    self._inflight.pop(i)
                    if self.on_puback:
                        self.on_puback(pid)
                    break
        elif kind == codec.PUBLISH:
            p = codec.parse_publish(first, body)
            if p[2] == 1:
                self._send(codec.puback_packet(p[5]))
            if self.on_message:
                self.on_message(p[0], p[1], p[3])
        elif kind == codec.SUBACK and self.on_suback:
            self.on_suback(struct.unpack("!H", body[0:2])[0], bytes(body[2:]))
        # PINGRESP needs nothing more; other types are not sent to a client.

    def _housekeeping(self):
        now = self._now()
        if self._ping_at is not None:
            if time.ticks_diff(now, self._ping_at) > self.timeout_ms:
                self._lost("no PINGRESP within %d ms" % self.timeout_ms)
        elif self.keepalive:
            n = self.keepalive * 1000
            # Ping well within the broker's 1.5 x keepalive limit, and also when the broker has
            # been silent a whole period: that finds a dead link even while we keep sending.
            if (time.ticks_diff(now, self._last_tx) >= n // 2
                    or time.ticks_diff(now, self._last_rx) >= n):
                self._send(b"\xc0\x00")  # PINGREQ
                self._ping_at = now
        for e in self._inflight:
            if time.ticks_diff(now, e[3]) >= self.ack_timeout_ms:
                self._resend(e)
