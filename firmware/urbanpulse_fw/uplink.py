# The board's way out: WiFi, then the MQTT session with reconnect backoff, the retained
# status topic and its last will. The main loop samples and batches; this keeps it connected.
import os
import time

from urbanpulse_fw import FW_VERSION, hw, mqtt

OFFLINE = b'{"state":"offline"}'


class Uplink:
    def __init__(self, cfg, boot, log):
        self.cfg = cfg
        self.boot = boot
        self.log = log
        self.stats = lambda: "heap free %d" % hw.free_heap()  # for the connect log line
        self.topic = "%s/%s/" % (cfg["mqtt_prefix"], cfg["device_id"])
        c = mqtt.Client(cfg["device_id"], cfg["mqtt_host"], cfg["mqtt_port"],
                        cfg["mqtt_username"], cfg["mqtt_password"], cfg["mqtt_keepalive_s"])
        c.set_last_will(self.topic + "status", OFFLINE, True, 1)
        self.client = c
        now = time.ticks_ms()
        self.next_connect = now
        self.next_wifi = time.ticks_add(now, 15000)
        self.backoff = 1000  # ms before the next connect attempt, doubled up to a minute
        self.wifi_up = False

    def start(self):
        hw.wifi_connect(self.cfg["wifi_ssid"], self.cfg["wifi_password"])

    def check(self, now):
        """Follow WiFi and, when it is up, (re)connect MQTT when due. True if connected."""
        state = hw.wifi_isconnected()
        if state != self.wifi_up:
            self.wifi_up = state
            self.log("wifi %s" % ("connected, rssi %s" % hw.wifi_rssi() if state else "lost"))
            if not state:
                self.client.close()
        if not state and time.ticks_diff(now, self.next_wifi) >= 0:
            self.next_wifi = time.ticks_add(now, 15000)
            self.start()
        if state and not self.client.connected and time.ticks_diff(now, self.next_connect) >= 0:
            self.connect()
        return self.client.connected

    def connect(self):
        cfg = self.cfg
        host = "%s:%d" % (cfg["mqtt_host"], cfg["mqtt_port"])
        try:
            self.client.connect()
        except (OSError, mqtt.MQTTError) as e:
            n = self.backoff + self.backoff * os.urandom(1)[0] // 1024  # + up to 25 % jitter
            self.log("mqtt connect to %s failed: %s; retry in %d ms" % (host, e, n))
            self.next_connect = time.ticks_add(time.ticks_ms(), n)
            self.backoff = min(self.backoff * 2, 60000)
            return
        self.backoff = 1000
        self.log("mqtt connected to %s (%s)" % (host, self.stats()))
        status = '{"state":"online","fw":"%s","boot":%d}' % (FW_VERSION, self.boot)
        self.client.publish(self.topic + "status", status.encode(), 1, True)

    def wait(self, ms):
        """Let up to ms pass: serving MQTT when connected, asleep otherwise (never spinning)."""
        c = self.client
        if c.connected:
            try:
                c.poll(max(0, ms))
            except mqtt.ConnectionLost as e:
                self.log("mqtt connection lost: %s" % e)
                self.next_connect = time.ticks_add(time.ticks_ms(), self.backoff)
            return
        if self.wifi_up:
            ms = min(ms, time.ticks_diff(self.next_connect, time.ticks_ms()))
        time.sleep_ms(max(1, ms))

    def shutdown(self):
        """Say offline (retained) and disconnect; if that fails the will says it for us."""
        c = self.client
        if c.connected:
            try:
                pid = c.publish(self.topic + "status", OFFLINE, 1, True)
                n = time.ticks_add(time.ticks_ms(), 2000)  # wait for the PUBACK, not forever
                while pid in c.inflight() and time.ticks_diff(n, time.ticks_ms()) > 0:
                    c.poll(50)
            except mqtt.MQTTError as e:
                self.log("offline status not confirmed: %s" % e)
            c.disconnect()
        self.log("offline")
