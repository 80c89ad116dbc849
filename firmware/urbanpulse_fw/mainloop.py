# The board's main loop: sample on schedule, batch into telemetry messages, publish them at
# QoS 1 one at a time, and keep the samples until the broker has them (uplink.py keeps the
# connection). Few names and plain numbers on purpose: every identifier costs heap.
import gc
import time

from urbanpulse_fw import FW_VERSION, clock, hw, sim, telemetry, uplink


class MainLoop:
    def __init__(self, cfg, boot):
        self.cfg = cfg
        self.sensors = []
        for i, s in enumerate(cfg["sensors"]):
            self.sensors.append(sim.make(s[1], cfg["seed"] + 7919 * i, cfg["sample_interval_s"],
                                         int(cfg["utc_offset_h"] * 3600)))
        self.up = uplink.Uplink(cfg, boot, self.log)
        n = cfg["max_buffer_bytes"]
        if n is None:
            # A share of the heap free once everything is loaded, at most 64 KiB: right for
            # 64 KiB host boards and for ESP32s with PSRAM alike.
            n = min(65536, hw.free_heap() // 4)
        ob = self.outbox = telemetry.Outbox(boot, cfg["max_samples_per_message"], n)
        self.up.stats = lambda: "buffered %d, dropped %d, heap free %d" % (
            ob.count, ob.dropped, hw.free_heap())
        self.up.client.on_puback = self.on_puback
        self.sample_ms = max(1, int(cfg["sample_interval_s"] * 1000))
        self.publish_ms = max(1, int(cfg["publish_interval_s"] * 1000))
        now = time.ticks_ms()
        self.next_sample = self.last_publish = self.next_clock = now
        self.acked = 0  # telemetry messages acknowledged by the broker
        self.clock_ok = True

    def log(self, msg):
        print("[%s] %s" % (self.cfg["device_id"], msg))

    def run(self):
        cfg = self.cfg
        self.log("boot %d, fw %s, kind %s, id %s" % (self.outbox.boot, FW_VERSION, cfg["kind"],
                                                     hw.unique_id()))
        self.up.start()
        n = cfg["max_messages"]
        try:
            while n is None or self.acked < n:
                self.step()
                gc.collect()
            self.log("stopping: %d telemetry messages acknowledged" % self.acked)
        except KeyboardInterrupt:
            self.log("interrupted")
        self.up.shutdown()

    def step(self):
        now = time.ticks_ms()
        if time.ticks_diff(now, self.next_sample) >= 0:
            self.sample()
            self.next_sample = time.ticks_add(self.next_sample, self.sample_ms)
            if time.ticks_diff(now, self.next_sample) >= 0:
                # Fell behind (e.g. a slow connect): skip the missed slots, no burst.
                self.next_sample = time.ticks_add(now, self.sample_ms)
        ob = self.outbox
        wait = min(500, time.ticks_diff(self.next_sample, now))
        if self.up.check(now) and ob.msg is None and ob.pending():
            # One telemetry message in flight at a time: strict order, bounded retries.
            n = time.ticks_diff(self.last_publish, now) + self.publish_ms
            if n <= 0 or ob.full():
                msg = ob.take()
                msg.pid = self.up.client.publish(self.up.topic + "telemetry", msg, 1)
                self.last_publish = now
            else:
                wait = min(wait, n)
        self.up.wait(wait - time.ticks_diff(time.ticks_ms(), now))

    def sample(self):
        now = time.ticks_ms()
        if self.up.wifi_up and time.ticks_diff(now, self.next_clock) >= 0:
            # NTP again in 6 h (an ESP32's RTC drifts seconds a day), or in 30 s if it failed.
            self.next_clock = time.ticks_add(now, 21600000 if hw.sync_time() else 30000)
        t = clock.now_ms()
        if not clock.is_valid(t):
            # Samples stamped 2000-01-01 would be rejected by the gateway: wait for NTP.
            if self.clock_ok:
                self.log("clock not set, waiting for NTP")
                self.clock_ok = False
            return
        self.clock_ok = True
        fields = []
        for s in self.sensors:
            fields.extend(s.read(t))
        self.outbox.add(telemetry.encode_sample(t, fields))

    def on_puback(self, pid):
        msg = self.outbox.msg
        if msg is not None and msg.pid == pid:
            self.outbox.ack(msg)
            self.acked += 1
