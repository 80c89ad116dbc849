# The board's main loop: poll the sensors, sample each on its own schedule, batch into
# telemetry messages, publish them at QoS 1 one at a time, and keep the samples until the
# broker has them (RAM, then the flash spool; uplink.py keeps the connection). Also the health
# report, remote commands (cmd.py), the watchdog and deep sleep. Few names and plain numbers
# on purpose: every identifier costs heap.
import gc
import json
import os
import sys
import time

from urbanpulse_fw import FW_VERSION, clock, hw, telemetry, uplink



class MainLoop:
    def __init__(self, cfg, boot, objs, errors=(), cause="power", wdt=None):
        self.cfg = cfg
        self.cause = cause
        self.errors = list(errors)  # config problems for the health report
        self.sensors = objs  # sensors.build()'s objects
        for e in errors:
            self.log("config: %s" % e)
        self.up = uplink.Uplink(cfg, boot, self.log)
        ob = self.outbox = telemetry.Outbox(boot, cfg["max_samples_per_message"], 0)
        ob.flash = cfg["max_flash_bytes"]
        ob.open_spool()  # samples from before this start go out first
        n = cfg["max_buffer_bytes"]
        if n is None:
            # A sixth of the heap free once everything is loaded (room for the working set
            # and for fragmentation), at most 64 KiB: right for
            # 64 KiB host boards and for ESP32s with PSRAM alike.
            n = min(65536, hw.free_heap() // 6)
            if cfg["wake_s"]:
                # A deep-sleep wake holds one sample, or a batch read back from the spool:
                # the buffer is allocated in one piece, so no bigger than needed.
                n = min(n, 1024)
        ob.resize(n)
        self.up.stats = lambda: "buffered %d, dropped %d, heap free %d" % (
            ob.held(), ob.lost(), hw.free_heap())
        c = self.up.client
        c.on_puback = self.on_puback
        c.on_message = self.on_message
        self.up.on_connect = self.on_connect
        self.publish_ms = max(1, int(cfg["publish_interval_s"] * 1000))
        now = self.started = clock.ticks()
        self.due = [now] * len(objs)
        self.last_publish = self.next_clock = self.next_health = now
        self.health_ms = int(cfg["health_interval_s"] * 1000)
        self.health_pid = 0
        self.ntp_ms = 2000
        self.taken = 0  # samples taken since start
        self.acked = 0  # telemetry messages acknowledged by the broker
        self.clock_ok = True
        self.early = []  # type: list  # [ticks, fields] sampled before the clock was set
        self.flushing = False
        self.blink = None  # type: list | None  # [ticks when identify ends, LED state]
        self.reboot_at = None  # type: int | None  # ticks: reboot once the ack is out
        self.trial = None  # type: int | None  # ticks by which a new config must connect
        self.wdt = wdt  # type: object

    def log(self, msg):
        print("[%s] %s" % (self.cfg["device_id"], msg))

    def run(self):
        cfg = self.cfg
        self.log("boot %d, fw %s, kind %s, id %s, reset cause %s, heap free %d, buffer %d" % (
            self.outbox.boot, FW_VERSION, cfg["kind"], cfg["uid"], self.cause,
            hw.free_heap(), self.outbox.max_bytes))
        self.up.start()
        n = cfg["max_messages"]
        try:
            while n is None or self.acked < n:
                try:
                    self.step()
                except MemoryError as e:
                    # Logged and survived: a reset would lose the RAM buffer as well.
                    gc.collect()
                    sys.print_exception(e)
                    self.log("out of memory (heap free %d)" % hw.free_heap())
                gc.collect()
            self.log("stopping: %d telemetry messages acknowledged" % self.acked)
        except KeyboardInterrupt:
            self.log("interrupted")
        self.stop()

    def stop(self):
        """Keep what is unsent in flash (it goes out after the next start), say offline."""
        ob = self.outbox
        try:
            ob.spill()
        except OSError as e:
            self.log("spill failed: %s" % e)
        self.log("%d samples taken, kept for later: %d samples" % (self.taken, ob.held()))
        self.up.shutdown()

    def step(self):
        now = clock.ticks()
        wait = 500 * clock.SCALE
        fields = None  # type: list | None
        for i, s in enumerate(self.sensors):
            s.poll(now)
            d = time.ticks_diff(self.due[i], now)
            if d <= 0:
                if fields is None:
                    fields = []
                    t = clock.now_ms()
                fields.extend(s.read(t))
                nxt = time.ticks_add(self.due[i], s.interval_ms)
                if time.ticks_diff(now, nxt) >= 0:
                    # Fell behind (e.g. a slow connect): skip the missed slots, no burst.
                    nxt = time.ticks_add(now, s.interval_ms)
                self.due[i] = nxt
                d = time.ticks_diff(nxt, now)
            wait = min(wait, d)
        if fields:
            self.sample(now, t, fields)
        up = self.up
        ob = self.outbox
        if up.wifi_up and time.ticks_diff(now, self.next_clock) >= 0:
            # NTP again in 6 h (an ESP32's RTC drifts seconds a day); after a failure in 2 s,
            # doubling up to 5 minutes.
            if hw.sync_time():
                self.ntp_ms = 2000
                self.next_clock = time.ticks_add(now, 21600000)
            else:
                self.next_clock = time.ticks_add(now, self.ntp_ms * clock.SCALE)
                self.ntp_ms = min(self.ntp_ms * 2, 300000)
        if up.check(now):
            if ob.msg is None and ob.pending():
                # One telemetry message in flight at a time: strict order, bounded retries.
                n = time.ticks_diff(self.last_publish, now) + self.publish_ms
                if n <= 0 or ob.full() or self.flushing:
                    msg = ob.take()
                    msg.pid = up.client.publish(up.topic + "telemetry", msg, 1)
                    self.last_publish = now
                else:
                    wait = min(wait, n)
            if self.flushing and not ob.pending():
                self.flushing = False
            if time.ticks_diff(now, self.next_health) >= 0:
                self.health(now)
        elif self.trial is not None and time.ticks_diff(now, self.trial) >= 0:
            self.cmd("rollback")
        if self.blink is not None:
            self.identify(now)
            wait = min(wait, 250 * clock.SCALE)
        if self.reboot_at is not None and (
                not up.client.inflight() or time.ticks_diff(now, self.reboot_at) >= 0):
            self.log("rebooting")
            self.stop()
            hw.reset()
        up.wait(clock.real_ms(wait - time.ticks_diff(clock.ticks(), now)))
        if self.wdt is not None:
            # Fed here only, after a whole pass: a pass that hangs (a sensor, the network,
            # a bug) stops feeding it and the watchdog resets the board.
            self.wdt.feed()  # type: ignore[attr-defined]

    def sample(self, now, t, fields):
        ob = self.outbox
        self.taken += 1
        if not clock.is_valid(t):
            rest = telemetry.encode_fields(fields)
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
                ob.add(telemetry.stamp(t - time.ticks_diff(now, e[0]), e[1]))
        self.clock_ok = True
        ob.add(telemetry.sample_view(t, fields))  # copied into the outbox: no allocation

    def health(self, now):
        c = self.up.client
        if self.health_pid in c.inflight() or not clock.is_valid(clock.now_ms()):
            return  # one report at a time, and only with a real timestamp
        self.next_health = time.ticks_add(now, self.health_ms)
        self.health_pid = c.publish(self.up.topic + "health", self.report(), 1)

    def report(self):
        # The health report (schema: /tmp/team/schema.md), formatted in one go (few
        # allocations); every field but t is optional, so unknown ones are left out.
        cfg = self.cfg
        ob = self.outbox
        x = ""
        r = hw.wifi_rssi()
        if r is not None:
            x = ',"rssi":%d' % r
        if cfg["battery_pin"] is not None:
            from urbanpulse_fw import hwmisc

            v = hwmisc.battery_volts(cfg["battery_pin"], cfg["battery_ratio"])
            hw.unload("hwmisc")
            if v is not None:
                x += ',"battery":%s' % telemetry.format_float(v)
        if self.errors:
            x += ',"config_error":%s' % json.dumps("; ".join(self.errors))
        f = ",".join("%s:%s" % (s.name, s.fault) for s in self.sensors if s.fault)
        return ('{"t":%d,"heap_free":%d,"uptime":%d,"buffered":%d,"dropped":%d,"fw":"%s",'
                '"reset_cause":"%s","faults":%s%s}' % (
                    clock.now_ms(), hw.free_heap(),
                    time.ticks_diff(clock.ticks(), self.started) // 1000, ob.held(), ob.lost(),
                    FW_VERSION, self.cause, json.dumps(f), x)).encode()

    def identify(self, now):
        b = self.blink
        if b is None:
            return
        if time.ticks_diff(now, b[0]) >= 0:
            hw.led(self.cfg["led_pin"], False)
            self.log("identify: done, %d blinks" % (b[1] // 2))
            self.blink = None
            return
        b[1] += 1
        hw.led(self.cfg["led_pin"], b[1] & 1)

    def on_connect(self):
        up = self.up
        up.client.subscribe(up.topic + "cmd", 1)
        if self.trial is not None or "cmd_ack" in os.listdir():
            self.cmd("connected")  # confirm the new config / answer a config command

    def on_message(self, topic, payload, retain):
        if topic == self.up.topic + "cmd":
            self.cmd("handle", payload)

    def cmd(self, name, *args):
        # cmd.py (2.7 KiB) is loaded at the first command only (most boards never get one)
        # and then stays: loading it per command would fragment a 64 KiB heap.
        if "urbanpulse_fw.cmd" not in sys.modules:
            gc.collect()
        from urbanpulse_fw import cmd

        getattr(cmd, name)(self, *args)

    def on_puback(self, pid):
        msg = self.outbox.msg
        if msg is not None and msg.pid == pid:
            self.outbox.ack(msg)
            self.acked += 1
