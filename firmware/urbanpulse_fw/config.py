# The board's config.json, read from the current directory (the root of the board's filesystem;
# on the host, the board's own folder). The fleet generator writes exactly this shape:
#
# {"device_id": "air-n-001",            required; 3-32 chars of a-z 0-9 -, starts with a letter
#  "kind": "air",                        required; air noise traffic parking streetlight water soil
#  "wifi": {"ssid": "urbanpulse",        required (ignored by the host stand-in)
#           "password": "secret"},       string or null (open network)
#  "mqtt": {"host": "127.0.0.1",         required
#           "backup_hosts": [],          brokers tried in turn when the one before fails
#                                        (same port, user and TLS settings); default none
#           "port": 18831,               default 1883
#           "username": null,            string or null
#           "password": null,            string or null; needs a username (MQTT 3.1.1)
#           "prefix": "city",            topic prefix, default "city"
#           "keepalive_s": 30,           0..65535, default 30
#           "tls": null},                null: plain MQTT; or {"ca_file": "ca.der" (the city's
#                                        CA, DER: the only one trusted), "hostname": null (the
#                                        name in the broker's certificate; null: the host
#                                        dialled)}
#  "ntp_host": null,                     NTP server; null: the broker's host (the public pool
#                                        may be blocked on a city network)
#  "sample_interval_s": 5,               0.01..86400, fractions allowed (tests); default 5
#  "publish_interval_s": 10,             0.01..86400, fractions allowed; default 10
#  "max_samples_per_message": 50,        1..100; default 50
#  "sensors": [{"type": "sim", "kind": "air"}],   default: one simulated sensor of `kind`
#  "seed": 1234}                         int; default derived from device_id
#
# "sensors" must be a non-empty list; its entries are checked by sensors.build() when the
# board starts, and a bad entry does not stop the board: it is reported (console, health
# "config_error") and the board still connects so that it can be fixed remotely.
#
# Resilience keys (optional): "max_flash_bytes" (flash spool for unsent samples, default
# 262144 on a board, 0 = none on the host unless deep sleep), "health_interval_s" (default
# 300), "watchdog_s" (hardware watchdog timeout, default 60 on a board, 0 = off on the host),
# "rollback_s" (a config set remotely must reach the broker within this long or config.bak
# comes back, default 600), "led_pin" (status LED for "identify", default 2 on a board),
# "battery": {"pin": 35, "ratio": 2.0} (ADC pin and voltage divider ratio of a battery board,
# default null), "deep_sleep": {"wake_s": 300, "publish_every": 6} (battery boards: sleep
# between samples; default null), and on the host only "host_clock": {"scale": 720,
# "start_ms": null, "wrap_in_s": null} (time runs `scale` times faster; a null start leaves the
# clock unset until the NTP stand-in sets it; wrap_in_s: the schedule ticks wrap at 2^30 as an
# ESP32's, that many board seconds after the start).
#
# Keys (CONTRACT.md v2): "cmd_key" (the city's Ed25519 command public key, 64 hex digits:
# then only commands it signed are carried out, cmdauth.py; null: any command, for benches
# and demos without keys), "device_key" (the board's own 32-byte secret, 64 hex digits) and
# "ota_key" (the city's Ed25519 release public key: updates over the air it signed are
# taken, ota.py; null: none are).
#
# Optional keys: "max_messages" (int or null: stop cleanly after that many telemetry messages
# were acknowledged; for tests), "utc_offset_h" (local time for the simulated daily patterns,
# default 0), "max_buffer_bytes" (RAM budget for unsent samples; default: a share of the free
# heap at start).
# Unknown keys are errors, so a misspelt key cannot silently fall back to a default.
import json
import sys

from urbanpulse_fw.sim import KINDS


class ConfigError(ValueError):
    pass


def _fail(name, text):
    raise ConfigError("config.json: %s: %s" % (name, text))


def _obj(v, name, keys):
    """v checked to be an object with only these keys ("" names the top level)."""
    if type(v) is not dict:
        _fail(name or "(top level)", "must be an object")
    for k in v:
        if k not in keys:
            _fail((name + "." if name else "") + k, "unknown key")
    return v


def _get(d, key, name, kind, default=..., lo=0, hi=0):
    """d[key] checked: kind is str, int or float (any number); null allowed when the default
    is None. Ranges are inclusive; NaN and infinities fail the range test."""
    v = d.get(key, default)
    if v is ...:  # required
        _fail(name, "missing")
    if v is None and default is None:
        return None
    t = type(v)
    if kind is str:
        if t is str:
            return v
        text = "a string"
    else:
        if (t is int or (kind is float and t is float)) and lo <= v <= hi:
            return v
        text = "%s %r..%r" % ("an integer" if kind is int else "a number in", lo, hi)
    _fail(name, "must be %s%s, got %r" % (text, " or null" if default is None else "", v))


def validate(raw):
    """The validated config as a flat dict: the JSON keys, nested ones prefixed ("mqtt_host"),
    defaults filled in. Raises ConfigError naming the offending key.

    A plain dict (no instance of a class of this module) lets the app unload this module once
    the config is read: its code is only needed at start, and RAM is tight.
    """
    _obj(raw, "", ("device_id", "kind", "wifi", "mqtt", "sample_interval_s",
                   "publish_interval_s", "max_samples_per_message", "sensors", "seed",
                   "max_messages", "utc_offset_h", "max_buffer_bytes", "max_flash_bytes",
                   "health_interval_s", "watchdog_s", "rollback_s", "led_pin", "battery",
                   "deep_sleep", "host_clock", "cmd_key", "device_key", "ntp_host", "ota_key"))
    dev = _get(raw, "device_id", "device_id", str)
    ok = 3 <= len(dev) <= 32 and "a" <= dev[0] <= "z"
    for x in dev:
        ok = ok and ("a" <= x <= "z" or "0" <= x <= "9" or x == "-")
    if not ok:
        _fail("device_id", "3 to 32 characters of a-z 0-9 -, starting with a letter, got %r"
              % dev)
    kind = _get(raw, "kind", "kind", str)
    if kind not in KINDS:
        _fail("kind", "must be one of %s, got %r" % (", ".join(KINDS), kind))
    c = {"device_id": dev, "kind": kind}

    for k in ("wifi", "mqtt"):
        if k not in raw:
            _fail(k, "missing")
    w = _obj(raw["wifi"], "wifi", ("ssid", "password"))
    c["wifi_ssid"] = _get(w, "ssid", "wifi.ssid", str)
    c["wifi_password"] = _get(w, "password", "wifi.password", str, None)

    m = _obj(raw["mqtt"], "mqtt",
             ("host", "backup_hosts", "port", "username", "password", "prefix",
              "keepalive_s", "tls"))
    c["mqtt_host"] = _get(m, "host", "mqtt.host", str)
    if not c["mqtt_host"]:
        _fail("mqtt.host", "must not be empty")
    b = m.get("backup_hosts", [])
    if type(b) is not list or len(b) > 4 or [h for h in b if type(h) is not str or not h]:
        _fail("mqtt.backup_hosts", "must be a list of up to 4 host names")
    c["mqtt_hosts"] = [c["mqtt_host"]] + b
    c["mqtt_port"] = _get(m, "port", "mqtt.port", int, 1883, 1, 65535)
    c["mqtt_username"] = _get(m, "username", "mqtt.username", str, None)
    c["mqtt_password"] = _get(m, "password", "mqtt.password", str, None)
    if c["mqtt_password"] is not None and c["mqtt_username"] is None:
        _fail("mqtt.password", "needs mqtt.username (MQTT 3.1.1)")
    p = c["mqtt_prefix"] = _get(m, "prefix", "mqtt.prefix", str, "city")
    if not p or "+" in p or "#" in p or "\0" in p or p[0] == "/" or p[-1] == "/":
        _fail("mqtt.prefix", "must be a topic without wildcards or outer '/', got %r" % p)
    c["mqtt_keepalive_s"] = _get(m, "keepalive_s", "mqtt.keepalive_s", int, 30, 0, 65535)
    # NTP from the broker's host unless named: a city network may block the public pool.
    c["ntp_host"] = _get(raw, "ntp_host", "ntp_host", str, None) or c["mqtt_host"]
    t = c["mqtt_tls"] = m.get("tls")
    if t is not None:
        # (CA file, name in the broker's certificate); startup.py makes the TLS context
        _obj(t, "mqtt.tls", ("ca_file", "hostname"))
        c["mqtt_tls"] = (_get(t, "ca_file", "mqtt.tls.ca_file", str, "ca.der"),
                         _get(t, "hostname", "mqtt.tls.hostname", str, None))

    for k, v in (("sample_interval_s", 5), ("publish_interval_s", 10)):
        c[k] = _get(raw, k, k, float, v, 0.01, 86400)
    k = "max_samples_per_message"
    c[k] = _get(raw, k, k, int, 50, 1, 100)

    sensors = raw.get("sensors", [{"type": "sim", "kind": kind}])
    if type(sensors) is not list or not sensors:
        _fail("sensors", "must be a non-empty list")
    c["sensors"] = sensors

    h = 5381  # default seed: a hash of the device id
    for x in dev:
        h = (h * 33 + ord(x)) & 0x3FFFFFFF
    c["seed"] = _get(raw, "seed", "seed", int, h, -(1 << 62), 1 << 62)
    c["max_messages"] = _get(raw, "max_messages", "max_messages", int, None, 1, 1 << 30)
    c["utc_offset_h"] = _get(raw, "utc_offset_h", "utc_offset_h", float, 0, -12, 14)
    k = "max_buffer_bytes"
    c[k] = _get(raw, k, k, int, None, 1024, 1 << 24)
    k = "max_flash_bytes"
    # Default on a board and for deep sleep; on the host (fleet, tests) only when asked for:
    # its code takes 2.5 KiB of a 64 KiB heap.
    host = sys.platform in ("linux", "darwin") and raw.get("deep_sleep") is None
    c[k] = _get(raw, k, k, int, 0 if host else 262144, 0, 1 << 26)
    if 0 < c[k] < 4096:
        _fail(k, "must be 0 (no flash spool) or at least 4096, got %r" % c[k])
    c["health_interval_s"] = _get(raw, "health_interval_s", "health_interval_s", float, 300,
                                  1, 86400)
    # Default on a board; on the host (fleet, tests) only when asked for (its stand-in,
    # host/hostwdt.py, runs a watcher process).
    w = c["watchdog_s"] = _get(raw, "watchdog_s", "watchdog_s", int,
                               0 if sys.platform in ("linux", "darwin") else 60, 0, 3600)
    if 0 < w < (2 if sys.platform in ("linux", "darwin") else 20):
        # A connect attempt may legitimately block for ~10 s (socket and CONNACK timeouts).
        _fail("watchdog_s", "must be 0 (off) or 20..3600 (host: 2..), got %r" % w)
    c["rollback_s"] = _get(raw, "rollback_s", "rollback_s", float, 600, 1, 86400)
    c["led_pin"] = _get(raw, "led_pin", "led_pin", int, 2, 0, 48)
    b = raw.get("battery")
    c["battery_pin"] = c["battery_ratio"] = None
    if b is not None:
        _obj(b, "battery", ("pin", "ratio"))
        c["battery_pin"] = _get(b, "pin", "battery.pin", int, ..., 0, 48)
        c["battery_ratio"] = _get(b, "ratio", "battery.ratio", float, 2.0, 0.1, 100)
    d = raw.get("deep_sleep")
    c["wake_s"] = c["publish_every"] = None
    if d is not None:
        _obj(d, "deep_sleep", ("wake_s", "publish_every"))
        c["wake_s"] = _get(d, "wake_s", "deep_sleep.wake_s", float, 300, 0.01, 86400)
        c["publish_every"] = _get(d, "publish_every", "deep_sleep.publish_every", int, 6,
                                  1, 10000)
        if [e for e in c["sensors"] if type(e) is dict and e.get("type") == "pulse"]:
            # Asleep, the board counts nothing: every vehicle between two wakes is lost.
            _fail("deep_sleep", "a pulse counter (vehicles) needs the board awake: "
                  "mains power, no deep_sleep")
    for k in ("cmd_key", "device_key", "ota_key"):
        v = c[k] = _get(raw, k, k, str, None)
        if v is not None and (len(v) != 64 or v.strip("0123456789abcdef")):
            _fail(k, "must be 64 lowercase hex digits (32 bytes) or null")
    h = raw.get("host_clock")
    c["clock_scale"] = 1
    c["clock_start_ms"] = -1  # -1: the port's own clock
    c["clock_wrap_ms"] = None
    if h is not None:
        _obj(h, "host_clock", ("scale", "start_ms", "wrap_in_s"))
        c["clock_scale"] = _get(h, "scale", "host_clock.scale", int, 1, 1, 100000)
        c["clock_start_ms"] = _get(h, "start_ms", "host_clock.start_ms", int, None, 0,
                                   1 << 50) or 0
        w = _get(h, "wrap_in_s", "host_clock.wrap_in_s", int, None, 0, 1 << 29)
        if w is not None:
            c["clock_wrap_ms"] = w * 1000
    return c


def load(path="config.json"):
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ConfigError("%s: cannot read: %s" % (path, e))
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise ConfigError("%s: not valid JSON: %s" % (path, e))
    return validate(raw)
