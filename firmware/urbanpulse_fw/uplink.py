# The board's way out: WiFi, then the MQTT session with reconnect backoff, the retained
# status topic and its last will. The main loop samples and batches; this keeps it connected.
import os
import time

from urbanpulse_fw import FW_VERSION, clock, hw, mqtt

if False:  # for type checkers only: no typing module on the board
    from typing import Any  # noqa: F401  (used in type comments)

OFFLINE = b'{"state":"offline"}'


def jitter(ms):
    """ms plus up to 25 % at random."""
    return ms + ms * os.urandom(1)[0] // 1024


class Uplink:
    def __init__(self, cfg, boot, log):
        self.cfg = cfg
        self.boot = boot
        self.log = log
        self.stats = None  # type: Any  # () -> str for the connect log line (the main loop's)
        self.topic = "%s/%s/" % (cfg["mqtt_prefix"], cfg["device_id"])
        # The broker, then its backups, tried in turn; each one's address resolved once
        # (getaddrinfo blocks the main loop, seconds when DNS is slow) until it fails.
        self.hosts = cfg["mqtt_hosts"]
        self.at = 0
        self.addrs = {}  # type: dict
        self.broker = "%s:%d" % (self.hosts[0], cfg["mqtt_port"])  # for the log
        c = mqtt.Client(cfg["device_id"], self.hosts[0], cfg["mqtt_port"],
                        cfg["mqtt_username"], cfg["mqtt_password"], cfg["mqtt_keepalive_s"])
        c.set_last_will(self.topic + "status", OFFLINE, True, 1)
        self.client = c
        now = time.ticks_ms()
        self.next_connect = now
        self.next_wifi = time.ticks_add(now, 15000)
        self.backoff = 1000  # ms before the next connect attempt, doubled up to a minute
        self.wifi_backoff = 15000  # ms before joining WiFi again, doubled up to 5 minutes
        self.wifi_up = False
        self.clean = True  # False: the broker keeps our subscription and queues commands
        self.on_connect = None  # type: Any  # called after every (re)connect

    def start(self):
        hw.wifi_connect(self.cfg["wifi_ssid"], self.cfg["wifi_password"])

    def check(self, _now=None):
        """Follow WiFi and, when it is up, (re)connect MQTT when due. True if connected.
        (Real time throughout: network timeouts do not follow a host's sped-up clock.)"""
        now = time.ticks_ms()
        state = hw.wifi_isconnected()
        if state != self.wifi_up:
            self.wifi_up = state
            self.log("wifi %s" % ("connected, rssi %s" % hw.wifi_rssi() if state else "lost"))
            if state:
                self.wifi_backoff = 15000
            else:
                self.client.close()
        if not state and time.ticks_diff(now, self.next_wifi) >= 0:
            # Exponential backoff with jitter: a street of boards after a power cut does not
            # hammer the access point in step.
            self.next_wifi = time.ticks_add(now, jitter(self.wifi_backoff))
            self.wifi_backoff = min(self.wifi_backoff * 2, 300000)
            self.start()
        if state and not self.client.connected and time.ticks_diff(now, self.next_connect) >= 0:
            self.connect()
        return self.client.connected

    def connect(self):
        if self.cfg["mqtt_tls"] and not clock.is_valid(clock.now_ms()):
            # The certificate's dates cannot be checked without the time (an ESP32 starts at
            # 2000-01-01): wait for NTP (the main loop's) rather than fail every handshake.
            self.log("mqtt: waiting for the clock (TLS)")
            self.next_connect = time.ticks_add(time.ticks_ms(), 2000)
            return
        c = self.client
        host = c.host = self.hosts[self.at]
        t = self.cfg["mqtt_tls"]
        if t:
            c.tls = (t[0], t[1] or host)  # the certificate names the host dialled
        try:
            addr = self.addrs.get(host)
            if addr is None:
                addr = self.addrs[host] = mqtt.resolve(host, c.port)
            c.connect(self.clean, addr)
        except (OSError, mqtt.MQTTError) as e:
            self.addrs.pop(host, None)  # resolved again next time: it may have moved
            self.at = (self.at + 1) % len(self.hosts)
            # The next broker at once; after a round of them all, back off.
            n = jitter(self.backoff) if self.at == 0 else 100
            # In parts (see MainLoop.log): this is logged all through an outage.
            self.log("mqtt connect to ", self.broker, " failed: ", e, "; retry in ", n, " ms")
            self.broker = "%s:%d" % (self.hosts[self.at], c.port)
            self.next_connect = time.ticks_add(time.ticks_ms(), n)
            if self.at == 0:
                self.backoff = min(self.backoff * 2, 60000)
            return
        self.backoff = 1000
        self.log("mqtt connected to ", self.broker, " (", self.stats(), ")")
        status = '{"state":"online","fw":"%s","boot":%d}' % (FW_VERSION, self.boot)
        self.client.publish(self.topic + "status", status.encode(), 1, True)
        if self.on_connect:
            try:
                self.on_connect()
            except mqtt.MQTTError as e:
                self.log("mqtt: %s" % e)

    def wait(self, ms):
        """Let up to ms pass: serving MQTT when connected, asleep otherwise (never spinning)."""
        c = self.client
        if c.connected:
            try:
                c.poll(max(0, ms))
            except mqtt.ConnectionLost as e:
                self.log("mqtt connection lost: ", e)
                self.next_connect = time.ticks_add(time.ticks_ms(), jitter(self.backoff))
            return
        if self.wifi_up:
            ms = min(ms, time.ticks_diff(self.next_connect, time.ticks_ms()))
        time.sleep_ms(max(1, ms))
