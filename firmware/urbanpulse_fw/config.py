# The board's config.json, read from the current directory (the root of the board's filesystem;
# on the host, the board's own folder). The fleet generator writes exactly this shape:
#
# {"device_id": "air-n-001",            required; 3-32 chars of a-z 0-9 -, starts with a letter
#  "kind": "air",                        required; air noise traffic parking streetlight water soil
#  "wifi": {"ssid": "urbanpulse",        required (ignored by the host stand-in)
#           "password": "secret"},       string or null (open network)
#  "mqtt": {"host": "127.0.0.1",         required
#           "port": 18831,               default 1883
#           "username": null,            string or null
#           "password": null,            string or null; needs a username (MQTT 3.1.1)
#           "prefix": "city",            topic prefix, default "city"
#           "keepalive_s": 30},          0..65535, default 30
#  "sample_interval_s": 5,               0.01..86400, fractions allowed (tests); default 5
#  "publish_interval_s": 10,             0.01..86400, fractions allowed; default 10
#  "max_samples_per_message": 50,        1..100; default 50
#  "sensors": [{"type": "sim", "kind": "air"}],   default: one simulated sensor of `kind`
#  "seed": 1234}                         int; default derived from device_id
#
# Optional keys: "max_messages" (int or null: stop cleanly after that many telemetry messages
# were acknowledged; for tests), "utc_offset_h" (local time for the simulated daily patterns,
# default 0), "max_buffer_bytes" (RAM budget for unsent samples; default: a share of the free
# heap at start).
# Unknown keys are errors, so a misspelt key cannot silently fall back to a default.
import json

KINDS = ("air", "noise", "traffic", "parking", "streetlight", "water", "soil")


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
                   "max_messages", "utc_offset_h", "max_buffer_bytes"))
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
             ("host", "port", "username", "password", "prefix", "keepalive_s"))
    c["mqtt_host"] = _get(m, "host", "mqtt.host", str)
    if not c["mqtt_host"]:
        _fail("mqtt.host", "must not be empty")
    c["mqtt_port"] = _get(m, "port", "mqtt.port", int, 1883, 1, 65535)
    c["mqtt_username"] = _get(m, "username", "mqtt.username", str, None)
    c["mqtt_password"] = _get(m, "password", "mqtt.password", str, None)
    if c["mqtt_password"] is not None and c["mqtt_username"] is None:
        _fail("mqtt.password", "needs mqtt.username (MQTT 3.1.1)")
    p = c["mqtt_prefix"] = _get(m, "prefix", "mqtt.prefix", str, "city")
    if not p or "+" in p or "#" in p or "\0" in p or p[0] == "/" or p[-1] == "/":
        _fail("mqtt.prefix", "must be a topic without wildcards or outer '/', got %r" % p)
    c["mqtt_keepalive_s"] = _get(m, "keepalive_s", "mqtt.keepalive_s", int, 30, 0, 65535)

    for k, v in (("sample_interval_s", 5), ("publish_interval_s", 10)):
        c[k] = _get(raw, k, k, float, v, 0.01, 86400)
    k = "max_samples_per_message"
    c[k] = _get(raw, k, k, int, 50, 1, 100)

    sensors = raw.get("sensors", [{"type": "sim", "kind": kind}])
    if type(sensors) is not list or not sensors:
        _fail("sensors", "must be a non-empty list")
    c["sensors"] = []
    for i, s in enumerate(sensors):
        k = "sensors[%d]" % i
        _obj(s, k, ("type", "kind"))
        t = _get(s, "type", k + ".type", str)
        if t != "sim":
            _fail(k + ".type", "must be sim (the only sensor type so far), got %r" % t)
        v = _get(s, "kind", k + ".kind", str)
        if v not in KINDS:
            _fail(k + ".kind", "must be one of %s, got %r" % (", ".join(KINDS), v))
        if (t, v) in c["sensors"]:
            # Two sensors of one kind would write the same keys twice into a sample.
            _fail(k + ".kind", "duplicate kind %r" % v)
        c["sensors"].append((t, v))

    h = 5381  # default seed: a hash of the device id
    for x in dev:
        h = (h * 33 + ord(x)) & 0x3FFFFFFF
    c["seed"] = _get(raw, "seed", "seed", int, h, -(1 << 62), 1 << 62)
    c["max_messages"] = _get(raw, "max_messages", "max_messages", int, None, 1, 1 << 30)
    c["utc_offset_h"] = _get(raw, "utc_offset_h", "utc_offset_h", float, 0, -12, 14)
    k = "max_buffer_bytes"
    c[k] = _get(raw, k, k, int, None, 1024, 1 << 24)
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
