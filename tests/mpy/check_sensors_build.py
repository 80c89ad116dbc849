# sensors.build(): bad entries are skipped with an error naming the key and the value, the
# good ones work; only the drivers a config names are loaded; host fault injection by file.
import os
import sys

import hostbus
from drivertest import read
from mpytest import eq, rmtree, tmpdir
from urbanpulse_fw import bus, sensors


def _build(entries, kind="air"):
    hostbus.reset()
    bus._i2c.clear()
    return sensors.build(entries, kind, 5, 1, 0)


def test_bad_entries_are_named_and_skipped():
    objs, errors = _build([
        {"type": "bme280"},
        {"type": "pms5003", "uart": {"bus": 2, "tx": "x", "rx": 16}},
        {"type": "soil", "adc": 4},
        {"type": "warp"},
        {"type": "water"},
        {"type": "bme280", "adr": 118, "name": "b2"},
        {"type": "bme280", "addr": 120, "name": "inside"},
        {"type": "scd41", "i2c": {"bus": 0, "scl": 19, "sda": 21}},
        {"type": "pulse", "pin": 22},
        {"type": "lamp", "relay": 35},
        {"type": "soil", "dry": 1000, "wet": 2000},
        {"type": "noise", "interval_s": 0},
        {"type": "bme280", "addr": 119},
        "bme280",
        {"type": "pms5003", "name": "pm"},
        {"type": "water", "mount_cm": 300, "uart": {"bus": 2}},
    ])
    eq(errors, [
        "sensors[1].uart.tx: must be an integer output pin 0..33 (not 6..11, 20, 24, 28..31), "
        "got 'x'",
        "sensors[2].adc: must be an ADC1 pin 32..39 (ADC2 does not work with WiFi on), got 4",
        "sensors[3].type: must be one of bme280, pms5003, scd41, noise, pulse, bay, lamp, "
        "water, soil, sim, got 'warp'",
        "sensors[4].mount_cm: missing",
        "sensors[5].adr: unknown key",
        "sensors[6].addr: must be 118 or 119, got 120",
        "sensors[7].i2c: I2C0 is already set up on SCL 22, SDA 21",
        "sensors[8].pin: GPIO 22 is already used by i2c0",
        "sensors[9].relay: must be an integer output pin 0..33 (not 6..11, 20, 24, 28..31), "
        "got 35",
        "sensors[10].dry: must be above wet (a capacitive probe reads lower when wet), got dry "
        "1000, wet 2000",
        "sensors[11].interval_s: must be a number in 0.01..86400, got 0",
        "sensors[12].name: 'bme280' is taken by another sensor: give each its own name",
        "sensors[13]: must be an object, got 'bme280'",
        "sensors[15].uart.bus: UART2 is already used by another sensor",
    ], "errors")
    eq([s.name for s in objs], ["bme280", "pm"], "the good entries")
    assert "temperature" in read(objs[0]), "and they work"
    eq(objs[0].interval_ms, 5000, "default interval: the board's")


def test_not_a_list_or_empty():
    eq(_build({"type": "bme280"}), ([], ["sensors: must be a list, got {'type': 'bme280'}"]),
       "an object")
    eq(_build([]), ([], ["sensors: empty: the board has nothing to measure"]), "empty")


def test_only_the_named_drivers_are_loaded():
    for m in list(sys.modules):
        if m.startswith("urbanpulse_fw.drivers.") and m != "urbanpulse_fw.drivers.base":
            del sys.modules[m]
    objs, errors = _build([{"type": "soil", "name": "bed-3", "interval_s": 60}], "soil")
    eq(errors, [], "errors")
    eq((objs[0].name, objs[0].interval_ms, objs[0].kind), ("bed-3", 60000, "soil"), "sensor")
    loaded = sorted(m for m in sys.modules if m.startswith("urbanpulse_fw.drivers."))
    eq(loaded, ["urbanpulse_fw.drivers.base", "urbanpulse_fw.drivers.soil"], "drivers loaded")


def test_sim_entries_have_the_sensor_interface():
    objs, errors = _build([{"type": "sim", "kind": "noise"}, {"type": "sim"}], "air")
    eq(errors, [], "errors")
    eq([(s.name, s.kind, s.fault) for s in objs], [("noise", "noise", None), ("air", "air", None)],
       "names")
    objs[0].poll(0)
    assert "laeq" in read(objs[0]) and "pm25" in read(objs[1])


def test_hostchips_file_injects_faults():
    d = tmpdir("hostchips")
    here = os.getcwd()
    try:
        os.chdir(d)
        with open("hostchips.json", "w") as f:
            f.write('{"i2c0.118": "missing", "i2c0.98": "stuck"}')
        hostbus._faults = None
        objs, errors = _build([{"type": "bme280"}, {"type": "scd41"}, {"type": "soil"}])
        eq(errors, [], "errors")
        for s in objs:
            s.read(1)
        eq([s.fault for s in objs], ["no_ack", "timeout", None], "faults")
    finally:
        os.chdir(here)
        hostbus._faults = None
        rmtree(d)
