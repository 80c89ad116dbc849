# The board's main loop: poll the sensors, sample each on its own schedule, batch into
# telemetry messages, publish them at QoS 1 one at a time, and keep the samples until the
# broker has them (RAM, then the flash spool; uplink.py keeps the connection). Also the health
# report, remote commands, the watchdog and deep sleep. Few names, functions and modules on
# purpose: every identifier and function object costs heap.
#
# Remote commands on {prefix}/{id}/cmd, answered on .../cmd/ack (firmware/README.md,
# "Commands"), are one function loaded at start: in a heap fragmented by a long run, a module
# loaded at the first command may find no block for its code. The signature check
# (cmdauth.py) is too big to keep loaded, so its room is kept instead (self.spare). "config"
# is saved as config.new and applied at the next start (cfgtrial.py): validating in the
# running firmware would not fit a 64 KiB heap.
import gc
import json
import os
import sys
import time

import machine
import ntptime  # (loaded at start, with the rest: on the host it is a module in the heap)

from urbanpulse_fw import FW_VERSION, clock, hw, mqtt, telemetry, uplink

if False:  # for type checkers only: no typing module on the board
    from typing import Any  # noqa: F401  (used in type comments)

_led = None  # the status LED's Pin, made at the first blink
DAY_MS = 86400000  # how far behind a missed deadline is kept (clock.recent)


def _num(d, key, lo, hi, default=None):
    v = d.get(key, default)
    if type(v) not in (int, float) or not lo <= v <= hi:
        raise ValueError("%s must be a number %r..%r, got %r" % (key, lo, hi, v))
    return v


def _forget(path):
    try:
        os.remove(path)
    except OSError:
        pass


class MainLoop:
    def __init__(self, cfg, boot, objs, errors=(), cause="power", wdt=None):
        # Every attribute first, the buffers after: the instance's table of attributes grows
        # in steps (up to 464 bytes in one piece), best while the heap still has the room.
        self.cfg = cfg
        self.cause = cause
        self.errors = list(errors)  # config problems for the health report
        self.sensors = objs  # sensors.build()'s objects
        self.cmd_key = None  # type: tuple | None  # (key, its table): edkey.py
        self.spare = []  # type: list  # room kept for checking a signature: edkey.py
        self.up = None  # type: Any  # uplink.Uplink
        self.outbox = None  # type: Any  # telemetry.Outbox
        self.publish_ms = max(1, int(cfg["publish_interval_s"] * 1000))
        ntptime.host = cfg["ntp_host"]
        now = self.last_tick = clock.ticks()
        self.up_s = self.up_ms = 0  # uptime, counted pass by pass: a span of ticks wraps
        self.due = [now] * len(objs)
        self.last_publish = self.next_clock = self.next_health = now
        self.health_ms = int(cfg["health_interval_s"] * 1000)
        self.health_pid = 0
        self.ntp_ms = 2000
        self.taken = 0  # samples taken since start
        self.last_t = 0  # the newest sample's time
        self.acked = 0  # telemetry messages acknowledged by the broker
        self.clock_ok = True
        self.early = []  # type: list  # [ticks, fields] sampled before the clock was set
        self.flushing = False
        self.blink = None  # type: list | None  # [ticks when identify ends, LED state]
        self.reboot_at = None  # type: int | None  # ticks: reboot once the ack is out
        self.reboot_why = "reboot"  # the next start's reset cause (hw.reset)
        self.trial = None  # type: int | None  # ticks by which a new config must connect
        self.fw_trial = cfg["fw_trial"]  # an update on trial: confirmed by a health PUBACK
        self.ota = None  # type: Any  # ota.Job: an update being fetched
        self.wdt = wdt  # type: object
        self.wake = None  # type: int | None  # deep sleep: deepsleep.count()'s, from app.py
        self.stable = False  # served STABLE_S connected: the crash count is cleared
        if cfg["cmd_key"]:
            from urbanpulse_fw import edkey

            edkey.prepare(self)
            hw.unload("edkey")
        for e in self.errors:
            self.log("config: %s" % e)
        self.up = uplink.Uplink(cfg, boot, self.log)
        ob = self.outbox = telemetry.Outbox(boot, cfg["max_samples_per_message"], 0)
        ob.flash = cfg["max_flash_bytes"]
        if cfg["device_key"]:
            from urbanpulse_fw import seal

            ob.seal = seal.Seal(cfg["device_id"], cfg["device_key"])
        ob.open_spool()  # samples from before this start go out first
        n = cfg["max_buffer_bytes"]
        if n is None:
            # A sixth of the heap free once everything is loaded (room for the working set
            # and for fragmentation; an eighth with a flash spool, where RAM overflows without
            # loss), at most 64 KiB: right for 64 KiB host boards and ESP32s with PSRAM alike.
            n = min(65536, hw.free_heap() // (8 if ob.spool else 6))
            if cfg["wake_s"]:
                # A deep-sleep wake holds one sample, or a batch read back from the spool:
                # the buffer is allocated in one piece, so no bigger than needed.
                n = min(n, 1024)
        ob.resize(n)
        self.up.stats = lambda: "buffered %d, dropped %d, heap free %d" % (
            ob.held(), ob.lost(), hw.free_heap())
        c = self.up.client
        c.on_puback = self.on_puback
        c.on_message = self.command
        self.up.on_connect = self.on_connect

    def log(self, *parts):
        # The parts printed one by one, neither joined nor passed on as print(*parts): trouble
        # (an outage, low memory) is when a board logs most, and a fragmented heap may then
        # have no room for a string the length of the line, nor for the argument array that
        # a call with *parts allocates (120 bytes for a reconnect line).
        print("[", self.cfg["device_id"], "] ", sep="", end="")
        for p in parts:
            print(p, end="")
        print()

    def go(self):
        """Run (main.py, after app.py made this loop): the main loop, or a deep-sleep wake's
        pass; a fatal error resets the board."""
        try:
            if self.cfg["wake_s"]:
                from urbanpulse_fw import deepsleep  # loaded by app.py, before the buffer

                deepsleep.wake(self, self.wake)
            else:
                self.run()
        except Exception as e:
            self.log("fatal error, resetting")
            sys.print_exception(e)
            if hw.ON_BOARD:
                time.sleep(5)  # no tight reboot loop
            hw.reset("fatal")

    def run(self):
        cfg = self.cfg
        self.log("boot %d, fw %s, kind %s, id %s, reset cause %s, heap free %d, buffer %d" % (
            self.outbox.boot, FW_VERSION, cfg["kind"], cfg["uid"], self.cause,
            hw.free_heap(), self.outbox.max_bytes))
        self.up.start()
        n = cfg["max_messages"]
        oom = 0  # MemoryErrors in a row: one episode, logged once
        try:
            while n is None or self.acked < n:
                try:
                    self.step()
                    oom = 0
                except MemoryError as e:
                    # A collection and a growing pause (a retry at once only spins); if it
                    # persists, a clean stop (the buffer to flash) and a reset.
                    gc.collect()
                    oom += 1
                    if oom == 1:
                        sys.print_exception(e)
                        self.log("out of memory (heap free ", hw.free_heap(), ")")
                    if oom > 11:
                        self.stop()
                        hw.reset("memory")
                    time.sleep_ms(min(1000, 10 << oom))
                gc.collect()
            self.log("stopping: %d telemetry messages acknowledged" % self.acked)
        except KeyboardInterrupt:
            self.log("interrupted")
        self.stop()

    def stop(self):
        """Say offline, then keep what is unacknowledged in flash (it goes out after the next
        start)."""
        ob = self.outbox
        # Say offline (retained) and disconnect; if that fails the will says it for us. First:
        # while waiting for its PUBACK, the one of a telemetry message in flight comes too.
        c = self.up.client
        if c.connected:
            try:
                pid = c.publish(self.up.topic + "status", uplink.OFFLINE, 1, True)
                n = time.ticks_add(time.ticks_ms(), 2000)  # wait for the PUBACK, not forever
                while pid in c.inflight() and time.ticks_diff(n, time.ticks_ms()) > 0:
                    c.poll(50)
            except mqtt.MQTTError as e:
                self.log("offline status not confirmed: %s" % e)
            c.disconnect()
        try:
            ob.spill(True)  # the message in flight too: it was not acknowledged
        except OSError as e:
            self.log("spill failed: %s" % e)
        self.log("%d samples taken, kept for later: %d samples" % (self.taken, ob.held()))
        self.log("offline")

    def step(self):
        now = clock.ticks()
        n = self.up_ms + clock.diff(now, self.last_tick)
        self.last_tick = now
        self.up_s += n // 1000
        self.up_ms = n % 1000
        # Deadlines left unserviced (no WiFi, no broker) for days stay at most a day behind.
        self.last_publish = clock.recent(now, self.last_publish, DAY_MS)
        self.next_clock = clock.recent(now, self.next_clock, DAY_MS)
        self.next_health = clock.recent(now, self.next_health, DAY_MS)
        for s in self.sensors:
            s.poll(now)
        # After the polls, which take time (a stuck bus, a slow host): a stale now would find
        # a sensor due again right after its sample, and sample it twice in one millisecond.
        now = clock.ticks()
        wait = 500 * clock.SCALE
        fields = None  # type: list | None
        for i, s in enumerate(self.sensors):
            d = clock.diff(self.due[i], now)
            if d <= 0:
                if fields is None:
                    fields = []
                    t = clock.now_ms()
                fields.extend(s.read(t))
                nxt = clock.add(self.due[i], s.interval_ms)
                if clock.diff(now, nxt) >= 0:
                    # Fell behind (e.g. a slow connect): skip the missed slots, no burst.
                    nxt = clock.add(now, s.interval_ms)
                self.due[i] = nxt
                d = clock.diff(nxt, now)
            wait = min(wait, d)
        if fields:
            self.sample(now, t, fields)
        up = self.up
        ob = self.outbox
        if up.wifi_up and clock.diff(now, self.next_clock) >= 0:
            # NTP again in 6 h (an ESP32's RTC drifts seconds a day); after a failure in 2 s,
            # doubling up to 5 minutes.
            try:
                ntptime.settime()  # on the host: firmware/host/ntptime.py
                ok = True
            except Exception:
                ok = False
            if ok:
                self.ntp_ms = 2000
                self.next_clock = clock.add(now, 21600000)
            else:
                self.next_clock = clock.add(now, self.ntp_ms * clock.SCALE)
                self.ntp_ms = min(self.ntp_ms * 2, 300000)
        on = up.check(now)
        if on:
            if ob.msg is None and ob.pending():
                # One telemetry message in flight at a time: strict order, bounded retries.
                n = clock.diff(self.last_publish, now) + self.publish_ms
                if n <= 0 or ob.full() or self.flushing:
                    msg = ob.take()
                    msg.pid = up.client.publish(up.topic + "telemetry", msg, 1)
                    self.last_publish = now
                else:
                    wait = min(wait, n)
            if self.flushing and not ob.pending():
                self.flushing = False
            if clock.diff(now, self.next_health) >= 0:
                self.health(now)
            if not self.stable and self.up_s >= 600:  # startup.STABLE_S
                self.stable = True
                _forget("crashes")
            if self.ota is not None:
                self.ota.step()
        if self.trial is not None and clock.diff(now, self.trial) >= 0 and (
                not on or self.fw_trial):
            # A config on trial is confirmed by the connection itself; an update only by its
            # health report's PUBACK (none without the clock), so its time runs out connected
            # too. It goes back at the next start by itself (boot.py).
            if "config.trial" in os.listdir():
                self.log("new config did not reach the broker in time: back to config.bak")
                with open("config.trial", "w") as f:
                    f.write("99")  # the next start rolls back (cfgtrial.starts)
            if self.fw_trial:
                self.log("update not confirmed in time: back to the last good firmware")
            self.trial = None
            self.reboot_at = now
            self.reboot_why = "rollback"
        if self.blink is not None:
            self.identify(now)  # blinking after an "identify" command
            wait = min(wait, 250 * clock.SCALE)
        if self.reboot_at is not None and (
                not up.client.inflight() or clock.diff(now, self.reboot_at) >= 0):
            self.log("rebooting")
            self.stop()
            hw.reset(self.reboot_why)
        up.wait((wait - clock.diff(clock.ticks(), now)) // clock.SCALE)  # real ms
        if self.wdt is not None:
            # Fed here only, after a whole pass: a pass that hangs (a sensor, the network,
            # a bug) stops feeding it and the watchdog resets the board.
            self.wdt.feed()  # type: ignore[attr-defined]

    def sample(self, now, t, fields):
        ob = self.outbox
        self.taken += 1
        if not clock.is_valid(t):
            rest = bytes(telemetry.encode(b"", fields))
            # Not stamped yet: keep the tick count and stamp it once NTP has set the clock.
            if self.clock_ok:
                self.log("clock not set, keeping samples until NTP")
                self.clock_ok = False
            # Bounded like the RAM outbox (they cannot go to flash unstamped).
            self.early.append((now, rest))
            if len(self.early) * 160 > ob.max_bytes:
                self.early.pop(0)
                ob.dropped += 1
            return
        if self.early:
            # t is now; an earlier sample was taken (now - its ticks) ago. Popped one by one:
            # never both copies of all of them in RAM.
            self.log("clock set: %d samples stamped" % len(self.early))
            while self.early:
                e = self.early.pop(0)
                ob.add(b'{"t":%d' % (t - clock.diff(now, e[0])) + e[1])
        self.clock_ok = True
        if t <= self.last_t:
            # Never two samples at one time (their key in storage: one would replace the
            # other), nor back in time after NTP stepped the clock back.
            t = self.last_t + 1
        self.last_t = t
        ob.add(telemetry.encode(b'{"t":%d' % t, fields))  # copied into the outbox: no allocation

    def health(self, now):
        c = self.up.client
        if self.health_pid in c.inflight() or not clock.is_valid(clock.now_ms()):
            return  # one report at a time, and only with a real timestamp
        self.next_health = clock.add(now, self.health_ms)
        # The health report (CONTRACT.md), sent in parts: no allocation the size of the whole
        # report, which a long-running 64 KiB heap may not have in one piece. Every field but
        # t is optional, so unknown ones are left out.
        cfg = self.cfg
        ob = self.outbox
        f = ""  # "name:fault,..." (a loop: a generator would be one more function object)
        for s in self.sensors:
            if s.fault:
                f += ("," if f else "") + "%s:%s" % (s.name, s.fault)
        # Pieces of at most about 60 bytes: small blocks are what a fragmented heap still has.
        parts = [b'{"t":%d,"heap_free":%d' % (clock.now_ms(), hw.free_heap()),
                 b',"uptime":%d,"buffered":%d,"dropped":%d' % (
                     self.up_s, ob.held(),
                     ob.lost()),
                 (',"fw":"%s","reset_cause":"%s","faults":' % (FW_VERSION, self.cause)).encode(),
                 json.dumps(f).encode()]
        r = hw.wifi_rssi()
        if r is not None:
            parts.append(b',"rssi":%d' % r)
        if cfg["battery_pin"] is not None:
            from urbanpulse_fw import hwmisc

            v = hwmisc.battery_volts(cfg["battery_pin"], cfg["battery_ratio"])
            hw.unload("hwmisc")
            if v is not None:
                parts.append((',"battery":%s' % telemetry.format_float(v)).encode())
        if self.errors:
            parts.append((',"config_error":%s' % json.dumps("; ".join(self.errors))).encode())
        parts.append(b"}")
        self.health_pid = c.publish(self.up.topic + "health", parts, 1)

    def on_connect(self):
        up = self.up
        up.client.subscribe(up.topic + "cmd", 1)
        # Answer a config command applied at this start (cfgtrial.py), confirm a config on
        # trial.
        for p in ("cmd_ack", "ota/ack"):  # ota.py's
            try:
                with open(p) as f:
                    up.client.publish(up.topic + "cmd/ack", f.read().encode(), 1)
                os.remove(p)
            except OSError:
                pass
        if self.ota is not None:
            up.client.subscribe(up.topic + "ota", 0)
            self.ota.asked = None
        if self.trial is not None and "config.trial" in os.listdir():
            _forget("config.trial")
            self.log("new config confirmed: connected to the broker")
            if not self.fw_trial:
                self.trial = None

    def on_puback(self, pid):
        msg = self.outbox.msg
        if msg is not None and msg.pid == pid:
            self.outbox.ack(msg)
            self.acked += 1
        elif self.fw_trial and pid == self.health_pid:
            from urbanpulse_fw import ota

            ota.confirm(self.up)
            hw.unload("ota")
            self.fw_trial = False
            self.trial = None
            self.log("update %s confirmed: its health report reached the broker" % FW_VERSION)

    def command(self, topic, payload, retain=False):
        """Carry out a command (the payload of a message on .../cmd) and answer it on .../cmd/ack.
        The client's on_message; one function, not one per op: each function object costs
        heap."""
        if self.ota is not None and topic == self.up.topic + "ota":
            self.ota.chunk(payload)
            return
        if topic != self.up.topic + "cmd" or not payload:
            return  # an empty payload clears a retained message: nothing to answer
        cid = None
        try:
            d = json.loads(payload)
            if type(d) is not dict:
                raise ValueError("must be a JSON object")
            cid = d.get("id")
            if retain:
                # Kept by the broker and sent again on every connect: a retained reboot would
                # reboot the board for ever (CONTRACT.md v2, "Signed commands").
                raise ValueError("retained")
            if self.cmd_key:
                n = len(self.spare)
                self.spare = []  # its room is the check's
                gc.collect()
                from urbanpulse_fw import cmdauth

                try:
                    cmdauth.check(self.cfg, self.cmd_key, d, payload)
                finally:
                    hw.unload("cmdauth")
                    for _ in range(n):
                        self.spare.append(bytearray(1024))
            op = d.get("op")
            now = clock.ticks()
            extra = {}  # type: dict
            if op == "reboot":
                # Once the ack is acknowledged (or after 5 s): the operator hears the answer.
                # A deliberate retry: the next start is a normal one (startup.crashes).
                self.reboot_at = clock.add(now, 5000 * clock.SCALE)
                self.reboot_why = "reboot"
                _forget("crashes")
            elif op == "set_interval":
                name = d.get("sensor")
                n = _num(d, "interval_s", 0.01, 86400)
                hit = []
                for i, s in enumerate(self.sensors):
                    if name in (s.name, getattr(s, "kind", None)):
                        s.interval_ms = int(n * 1000)
                        self.due[i] = now
                        hit.append(s.name)
                if not hit:
                    raise ValueError("sensor: no sensor named %r" % (name,))
                extra["sensors"] = hit
            elif op == "identify":
                n = _num(d, "seconds", 1, 600, 10)
                self.log("identify: blinking the status LED for %s s" % n)
                self.blink = [clock.add(now, int(n * 1000) * clock.SCALE), 0]
            elif op == "flush":
                self.flushing = True
                extra["buffered"] = self.outbox.held()
            elif op == "ota":
                from urbanpulse_fw import ota  # the download's Job keeps its class alive

                try:
                    ota.command(self, d, extra)
                finally:
                    hw.unload("ota")
            elif op == "config":
                new = d.get("config")
                if type(new) is not dict or not new:
                    raise ValueError("config must be a non-empty object")
                with open("config.new", "wb") as f:
                    f.write(payload)  # the whole command: cfgtrial.py checks the rest
                self.reboot_at = now
                self.reboot_why = "config"
                return  # answered after the reboot (cfgtrial.py, then MainLoop.on_connect)
            else:
                raise ValueError("unknown op %r" % (op,))
            self.log("command %s: ok" % cid)
            extra["ok"] = True
        except (ValueError, TypeError, OSError, MemoryError) as e:
            self.log("command %s refused: %s" % (cid, e))
            extra = {"ok": False, "error": str(e) or type(e).__name__}
        extra["id"] = cid
        up = self.up
        up.client.publish(up.topic + "cmd/ack", json.dumps(extra).encode(), 1)

    def identify(self, now):
        """Blink the status LED (called every pass while self.blink is set); a no-op where there
        is no GPIO (the host)."""
        global _led
        b = self.blink
        if b is None:
            return
        pin = self.cfg["led_pin"]
        done = clock.diff(now, b[0]) >= 0
        if not done:
            b[1] += 1
        if hw.ON_BOARD and pin is not None:
            if _led is None:
                _led = machine.Pin(pin, machine.Pin.OUT)
            _led.value(b[1] & 1 and not done)
        if done:
            self.log("identify: done, %d blinks" % (b[1] // 2))
            self.blink = None
