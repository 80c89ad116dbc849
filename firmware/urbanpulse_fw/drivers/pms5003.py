# Plantower PMS5003 particle counter on a UART (9600 8N1), active mode: it sends a 32-byte
# frame about every second: 42 4D, length (28), 13 big-endian words, checksum = the 16-bit
# sum of all bytes before it. We report the "atmospheric environment" PM1/PM2.5/PM10.
# Its fan and laser last about 8000 hours: when samples are minutes apart it sleeps between
# them (command E4) and wakes 30 s before the next one, as the datasheet asks for stable data.
import os
import time

from urbanpulse_fw.drivers import base

if False:  # for type checkers only: const() is the compiler's own (an import would cost heap)
    from micropython import const

# Frames start with 42 4D (tick parses them); commands are 42 4D, command, data (2 bytes),
# sum (2 bytes).
_FRAME_LENGTH = const(28)  # the length field: the bytes after it
_SLEEP = const(b"\x42\x4d\xe4\x00\x00\x01\x73")  # command E4, data 0: sleep
_WAKE = const(b"\x42\x4d\xe4\x00\x01\x01\x74")  # command E4, data 1: wake up

STALE_MS = 10000  # frames come every 0.2..2.3 s; none for this long means it stopped
WARM_MS = 30000  # after waking: the fan needs this long before the data is stable


REST = "pms_rest"  # put to sleep before a deep sleep: the next start wakes it, then warms up


class Sensor(base.Sensor):
    wait_ms = WARM_MS + 5000  # a deep-sleep wake: the warm-up, then a frame

    def __init__(self, uart):
        self.uart = uart
        self.fb = bytearray(64)  # the line's bytes not parsed yet: self.n of them
        self.n = 0
        self.v = [0, 0, 0]  # PM1, PM2.5, PM10 of the newest good frame, set in place
        self.pm = None  # self.v once a frame came (None: no data, e.g. after waking)
        self.at = self.heard = time.ticks_ms()  # when the last good frame came (or we started)
        self.bad = False  # the last frame had a wrong checksum or length
        self.asleep = False
        self.wake = self.warm = self.at
        try:
            os.remove(REST)  # it sleeps since the last wake: wake it, data after the warm-up
            self.asleep = True
        except OSError:
            pass

    def rest(self):
        self.uart.write(_SLEEP)
        try:
            with open(REST, "w"):
                pass
        except OSError:
            pass

    def tick(self, now):
        if self.asleep:
            if time.ticks_diff(time.ticks_ms(), self.wake) >= 0:  # wake it up
                self.uart.write(_WAKE)
                self.asleep = False
                self.pm = None
                # No fault for the warm-up: frames (and data) are expected from its end on.
                self.warm = self.heard = self.at = time.ticks_add(time.ticks_ms(), WARM_MS)
            return
        # The line is read into self.fb, allocated once, and frames are parsed where they
        # lie: bytes objects cut and joined every pass, some kept until the next, broke a
        # long-running 64 KiB heap into holes too small for a sample (a soak test found it).
        fb = self.fb
        while True:
            k = self.uart.any()
            d = self.uart.read(min(k, 64 - self.n)) if k else None
            if not d:
                return
            n = self.n + len(d)
            fb[self.n:n] = d
            i = 0
            while True:
                while i < n - 1 and not (fb[i] == 0x42 and fb[i + 1] == 0x4D):
                    i += 1
                if i >= n - 1:  # no frame start: keep a last 0x42, it may begin the next
                    i = n - 1 if n and fb[n - 1] == 0x42 else n
                    break
                if n - i < 32:
                    break  # the rest of this frame comes later
                self.heard = time.ticks_ms()
                self.dead = False
                c = 0
                for j in range(i, i + 30):
                    c += fb[j]
                if (fb[i + 2] << 8 | fb[i + 3] != _FRAME_LENGTH
                        or c & 0xFFFF != fb[i + 30] << 8 | fb[i + 31]):
                    self.bad = True
                    i += 2  # resynchronise on the next 42 4D
                    continue
                self.bad = False
                if time.ticks_diff(self.heard, self.warm) >= 0:  # not while the fan spins up
                    v = self.pm = self.v
                    v[0] = fb[i + 10] << 8 | fb[i + 11]
                    v[1] = fb[i + 12] << 8 | fb[i + 13]
                    v[2] = fb[i + 14] << 8 | fb[i + 15]
                    self.at = time.ticks_ms()
                i += 32
            for j in range(i, n):  # what is left (less than a frame) to the front
                fb[j - i] = fb[j]
            self.n = n - i

    def sample(self, t):
        if self.asleep:  # sampled earlier than planned (a new interval): wake it now
            self.wake = time.ticks_ms()
            self.tick(0)
            return []
        self.tick(0)
        now = time.ticks_ms()
        if self.dead or time.ticks_diff(now, self.heard) > STALE_MS:
            self.pm = None
            self.dead = True  # until a frame comes: no wrap of ticks makes it look fresh
            return "timeout"  # silence on the line
        if self.bad:
            return "checksum"  # the latest frame was corrupt: no sample from an older one
        if time.ticks_diff(now, self.at) > STALE_MS:
            return "timeout"
        pm = self.pm
        if pm is None:
            return []  # just started: no frame yet
        if pm[2] > 2000 or not pm[0] <= pm[1] <= pm[2]:
            return "range"
        if self.interval_ms > 3 * WARM_MS:
            self.uart.write(_SLEEP)
            self.asleep = True
            # Awake and warm a little (a tenth of the warm-up) before the next sample.
            self.wake = time.ticks_add(now, self.interval_ms - WARM_MS - WARM_MS // 10)
        return [("pm1", pm[0]), ("pm25", pm[1]), ("pm10", pm[2])]
