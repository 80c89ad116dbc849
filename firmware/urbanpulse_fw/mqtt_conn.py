# One TCP connection to the broker: writes whole packets, buffers what arrives and cuts it
# into packets. Packets bigger than max_packet are skipped unread (a huge retained message
# must not exhaust a small heap).
import select
import socket
import time

from urbanpulse_fw.mqtt_codec import ConnectionLost, decode_length

# Receive buffer, allocated once for every connection: a reconnect on a long-running board's
# fragmented heap may not find 256 bytes in one piece.
_rbuf = bytearray(256)
_rmv = memoryview(_rbuf)


class Connection:
    def __init__(self, host, port, timeout_ms=5000, max_packet=16384):
        self.timeout_ms = timeout_ms
        self.max_packet = max_packet
        self.buf = b""
        self.skip = 0  # bytes of an oversized packet still to discard
        self.writing = False  # True while a packet is half written
        self.poller = None
        self.sock = self._open(socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][-1])

    def _open(self, sockaddr):
        s = socket.socket()
        try:
            s.settimeout(self.timeout_ms / 1000)
            s.connect(sockaddr)
        except Exception:
            s.close()
            raise
        return s

    def wait(self, timeout_ms):
        """True when input is ready within timeout_ms."""
        if self.poller is None:
            self.poller = select.poll()
            self.poller.register(self.sock, select.POLLIN)
        return bool(self.poller.poll(max(0, int(timeout_ms))))

    def _write(self, b):
        b = memoryview(b)
        while len(b):
            n = self.sock.send(b)
            if not n:
                raise OSError("send returned %r" % (n,))
            b = b[n:]

    def send(self, data, payload=None):
        if self.writing:
            # A write was cut short (KeyboardInterrupt): the stream is out of step for good.
            raise OSError("stream broken by an interrupted write")
        self.writing = True
        self._write(data)
        if isinstance(payload, (list, tuple)):
            for b in payload:
                self._write(b)
        elif hasattr(payload, "chunks"):
            for b in payload.chunks():
                self._write(b)
        elif payload is not None:
            self._write(payload)
        self.writing = False

    def receive(self):
        # Into a buffer allocated once, then only the bytes that came are copied: a long
        # running board's fragmented heap may not have a 256-byte block free for recv(256).
        # Non-blocking for the read only (readinto would wait to fill the whole buffer).
        s = self.sock
        s.setblocking(False)
        try:
            n = s.readinto(_rbuf)
        finally:
            s.setblocking(True)
            s.settimeout(self.timeout_ms / 1000)
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

    def packet(self):
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

    def read_packet(self, timeout_ms):
        """Wait for one packet (used while connecting); None on timeout."""
        t = time.ticks_add(time.ticks_ms(), timeout_ms)
        while True:
            p = self.packet()
            if p is not None:
                return p
            n = time.ticks_diff(t, time.ticks_ms())
            if n <= 0 or not self.wait(n):
                return None
            self.receive()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
