# config.json validation: the fleet generator's shape loads; every bad value names its key.
import json

from mpytest import eq, raises, rmtree, tmpdir
from urbanpulse_fw import config


def example():
    return {"device_id": "air-n-001", "kind": "air",
            "wifi": {"ssid": "urbanpulse", "password": "secret"},
            "mqtt": {"host": "127.0.0.1", "port": 18831, "username": None, "password": None,
                     "prefix": "city", "keepalive_s": 30},
            "sample_interval_s": 5, "publish_interval_s": 10, "max_samples_per_message": 50,
            "sensors": [{"type": "sim", "kind": "air"}],
            "seed": 1234}


def bad(mutate, key):
    raw = example()
    mutate(raw)
    e = raises(config.ConfigError, config.validate, raw)
    assert key in str(e), "error %r does not name %r" % (str(e), key)
    return e


def test_example_loads_from_file():
    d = tmpdir("config")
    try:
        with open(d + "/config.json", "w") as f:
            f.write(json.dumps(example()))
        c = config.load(d + "/config.json")
    finally:
        rmtree(d)
    eq(c["device_id"], "air-n-001", "device_id")
    eq((c["mqtt_host"], c["mqtt_port"], c["mqtt_prefix"], c["mqtt_keepalive_s"]),
       ("127.0.0.1", 18831, "city", 30), "mqtt")
    eq((c["mqtt_username"], c["mqtt_password"]), (None, None), "anonymous")
    eq(c["sensors"], [{"type": "sim", "kind": "air"}], "sensors, passed on to sensors.build")
    eq((c["sample_interval_s"], c["publish_interval_s"], c["max_samples_per_message"]),
       (5, 10, 50), "intervals")
    eq((c["seed"], c["max_messages"], c["utc_offset_h"], c["max_buffer_bytes"]),
       (1234, None, 0, None), "seed and optional keys")


def test_defaults_and_fractions():
    raw = {"device_id": "soil-7", "kind": "soil", "wifi": {"ssid": "x"},
           "mqtt": {"host": "broker.local"}, "sample_interval_s": 0.2,
           "publish_interval_s": 1, "max_messages": 5}
    c = config.validate(raw)
    eq((c["mqtt_port"], c["mqtt_prefix"], c["mqtt_keepalive_s"]), (1883, "city", 30), "defaults")
    eq(c["sensors"], [{"type": "sim", "kind": "soil"}], "one sensor of the board's kind")
    eq(c["sample_interval_s"], 0.2, "fractions allowed")
    eq(c["max_messages"], 5, "max_messages")
    eq(c["max_samples_per_message"], 50, "default batch")
    assert isinstance(c["seed"], int), "seed from the device id"
    eq(config.validate(raw)["seed"], c["seed"], "stable seed")


def test_every_kind_accepted():
    for kind in ("air", "noise", "traffic", "parking", "streetlight", "water", "soil"):
        raw = example()
        raw["kind"] = kind
        raw["sensors"] = [{"type": "sim", "kind": kind}]
        eq(config.validate(raw)["kind"], kind, "kind")


def test_missing_keys_named():
    bad(lambda r: r.pop("device_id"), "device_id")
    bad(lambda r: r.pop("kind"), "kind")
    bad(lambda r: r.pop("wifi"), "wifi")
    bad(lambda r: r["wifi"].pop("ssid"), "wifi.ssid")
    bad(lambda r: r.pop("mqtt"), "mqtt")
    bad(lambda r: r["mqtt"].pop("host"), "mqtt.host")


def test_device_id_rules():
    for dev in ("ab", "Air-1", "1air", "air_1", "a" * 33, "air n", ""):
        bad(lambda r, dev=dev: r.__setitem__("device_id", dev), "device_id")
    bad(lambda r: r.__setitem__("device_id", 17), "device_id")
    for dev in ("abc", "a" * 32, "air-n-001", "x-1-"):
        raw = example()
        raw["device_id"] = dev
        eq(config.validate(raw)["device_id"], dev, "valid id")


def test_wrong_types_and_ranges_named():
    bad(lambda r: r.__setitem__("kind", "weather"), "kind")
    bad(lambda r: r["mqtt"].__setitem__("port", "1883"), "mqtt.port")
    bad(lambda r: r["mqtt"].__setitem__("port", 0), "mqtt.port")
    bad(lambda r: r["mqtt"].__setitem__("port", 70000), "mqtt.port")
    bad(lambda r: r["mqtt"].__setitem__("port", True), "mqtt.port")
    bad(lambda r: r["mqtt"].__setitem__("host", ""), "mqtt.host")
    bad(lambda r: r["mqtt"].__setitem__("keepalive_s", -1), "mqtt.keepalive_s")
    bad(lambda r: r["mqtt"].__setitem__("prefix", "city/#"), "mqtt.prefix")
    bad(lambda r: r["mqtt"].__setitem__("prefix", ""), "mqtt.prefix")
    bad(lambda r: r["mqtt"].__setitem__("password", "pw"), "mqtt.password")
    bad(lambda r: r["wifi"].__setitem__("password", 5), "wifi.password")
    bad(lambda r: r.__setitem__("sample_interval_s", 0), "sample_interval_s")
    bad(lambda r: r.__setitem__("sample_interval_s", -1), "sample_interval_s")
    bad(lambda r: r.__setitem__("sample_interval_s", "5"), "sample_interval_s")
    bad(lambda r: r.__setitem__("sample_interval_s", True), "sample_interval_s")
    bad(lambda r: r.__setitem__("publish_interval_s", None), "publish_interval_s")
    bad(lambda r: r.__setitem__("max_samples_per_message", 0), "max_samples_per_message")
    bad(lambda r: r.__setitem__("max_samples_per_message", 101), "max_samples_per_message")
    bad(lambda r: r.__setitem__("max_samples_per_message", 5.0), "max_samples_per_message")
    bad(lambda r: r.__setitem__("seed", "1234"), "seed")
    bad(lambda r: r.__setitem__("max_messages", 0), "max_messages")
    bad(lambda r: r.__setitem__("utc_offset_h", 20), "utc_offset_h")
    bad(lambda r: r.__setitem__("max_buffer_bytes", 10), "max_buffer_bytes")


def test_a_pulse_counter_is_refused_on_a_sleeping_board():
    raw = example()
    raw["kind"] = "traffic"
    raw["sensors"] = [{"type": "pulse", "pin": 27}]
    raw["deep_sleep"] = {"wake_s": 300}
    e = raises(config.ConfigError, config.validate, raw)
    assert "deep_sleep" in str(e) and "pulse counter" in str(e), str(e)
    del raw["deep_sleep"]
    eq(config.validate(raw)["wake_s"], None, "awake, it counts")


def test_backup_brokers_follow_the_broker():
    c = config.validate(example())
    eq(c["mqtt_hosts"], ["127.0.0.1"], "the broker alone")
    raw = example()
    raw["mqtt"]["backup_hosts"] = ["mqtt2.city.example", "10.0.0.3"]
    raw["mqtt"]["tls"] = {"ca_file": "ca.der"}
    c = config.validate(raw)
    eq(c["mqtt_hosts"], ["127.0.0.1", "mqtt2.city.example", "10.0.0.3"], "tried in turn")
    eq(c["mqtt_tls"], ("ca.der", None), "the certificate names the host dialled")
    bad(lambda r: r["mqtt"].__setitem__("backup_hosts", "mqtt2"), "mqtt.backup_hosts")
    bad(lambda r: r["mqtt"].__setitem__("backup_hosts", [""]), "mqtt.backup_hosts")
    bad(lambda r: r["mqtt"].__setitem__("backup_hosts", ["a"] * 5), "mqtt.backup_hosts")


def test_sensors_checked():
    # The list itself is checked here; its entries by sensors.build() at start, where a bad
    # entry is reported but does not stop the board.
    bad(lambda r: r.__setitem__("sensors", []), "sensors")
    bad(lambda r: r.__setitem__("sensors", {"type": "sim"}), "sensors")
    raw = example()
    raw["sensors"] = [{"type": "sim", "kind": "air"}, {"type": "bme280", "addr": "x"}]
    eq(config.validate(raw)["sensors"], raw["sensors"], "entries passed through")


def test_resilience_keys():
    c = config.validate(example())
    eq((c["max_flash_bytes"], c["health_interval_s"], c["rollback_s"], c["wake_s"],
        c["battery_pin"], c["clock_scale"], c["clock_start_ms"]),
       (0, 300, 600, None, None, 1, -1), "defaults (host: no spool unless asked)")
    raw = example()
    raw.update({"deep_sleep": {"wake_s": 60, "publish_every": 3}, "battery": {"pin": 35},
                "host_clock": {"scale": 720, "start_ms": None}, "watchdog_s": 30})
    c = config.validate(raw)
    eq((c["wake_s"], c["publish_every"], c["battery_pin"], c["battery_ratio"]),
       (60, 3, 35, 2.0), "deep sleep and battery")
    eq((c["clock_scale"], c["clock_start_ms"], c["watchdog_s"]), (720, 0, 30), "host clock")
    bad(lambda r: r.__setitem__("max_flash_bytes", 100), "max_flash_bytes")
    bad(lambda r: r.__setitem__("watchdog_s", 1), "watchdog_s")
    bad(lambda r: r.__setitem__("deep_sleep", {"wake_s": 0}), "deep_sleep.wake_s")
    bad(lambda r: r.__setitem__("deep_sleep", {"wake": 5}), "deep_sleep.wake")
    bad(lambda r: r.__setitem__("battery", {"ratio": 2}), "battery.pin")
    bad(lambda r: r.__setitem__("health_interval_s", 0), "health_interval_s")


def test_unknown_keys_named():
    bad(lambda r: r.__setitem__("sample_intervals", 5), "sample_intervals")
    bad(lambda r: r["mqtt"].__setitem__("tls", True), "mqtt.tls")
    bad(lambda r: r["wifi"].__setitem__("bssid", "x"), "wifi.bssid")


def test_not_an_object():
    raises(config.ConfigError, config.validate, [1, 2])
    bad(lambda r: r.__setitem__("mqtt", "localhost"), "mqtt")


def test_unreadable_or_invalid_file():
    e = raises(config.ConfigError, config.load, "/nonexistent/config.json")
    assert "config.json" in str(e), str(e)
    d = tmpdir("config")
    try:
        with open(d + "/config.json", "w") as f:
            f.write('{"device_id": ')
        e = raises(config.ConfigError, config.load, d + "/config.json")
        assert "JSON" in str(e), str(e)
    finally:
        rmtree(d)


def test_keys_are_64_lowercase_hex_digits_or_null():
    raw = example()
    eq(config.validate(raw)["cmd_key"], None, "no command key by default")
    raw["cmd_key"] = "ab" * 32
    raw["device_key"] = "0f" * 32
    c = config.validate(raw)
    eq((c["cmd_key"], c["device_key"]), ("ab" * 32, "0f" * 32), "keys kept as hex")
    for key in ("cmd_key", "device_key"):
        for value in ("AB" * 32, "ab" * 31, "xy" * 32, 7):
            bad(lambda r, k=key, v=value: r.__setitem__(k, v), key)
