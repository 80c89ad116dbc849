# Street drivers against the emulated hardware: noise (energetic means), vehicle pulses,
# parking hysteresis, streetlight relay and PZEM-004T meter, river level, soil moisture.
import math
import os
import time

import hostbus
from drivertest import build, near, one, poll_for, poll_until, read
from mpytest import eq, in_tmpdir, setting
from urbanpulse_fw import clock, sensors
from urbanpulse_fw.drivers import lamp, pulse, pzem, water


def test_noise_energetic_mean_max_min():
    s = one({"type": "noise"}, "noise")
    emu = hostbus.chip("adc35", "noise")
    read(s)  # the period so far (one reading of the simulated street) is reported
    emu.levels = [60.0, 70.0, 80.0, 70.0]
    for _ in range(4):
        s.add()  # what poll() does once a second
    d = read(s)
    want = 10 * math.log10((10 ** 6 + 10 ** 7 + 10 ** 8 + 10 ** 7) / 4)  # 75.9, not 70
    near(d["laeq"], want, 0.06, "LAeq (energetic mean)")
    near(d["lamax"], 80.0, 0.06, "LAmax")
    near(d["lamin"], 60.0, 0.06, "LAmin")
    emu.levels = [55.0]
    d = read(s)  # a new period: the previous readings are gone
    near(d["laeq"], 55.0, 0.06, "next period")
    near(d["lamax"], 55.0, 0.06, "next period max")


def test_noise_read_once_a_second_and_unplugged():
    s = one({"type": "noise", "adc": 35}, "noise")
    emu = hostbus.chip("adc35", "noise")
    emu.levels = [50.0] * 10
    poll_for(s, 2300)
    eq(len(emu.levels) in (7, 8), True, "2-3 readings in 2.3 s, not one per poll: %d left"
       % len(emu.levels))
    read(s)
    emu.fault = "missing"
    eq(s.read(1), [], "no sample from an unplugged module")
    eq(s.fault, "range", "fault")


def test_pulses_counted_per_period_with_debounce():
    s = one({"type": "pulse", "pin": 27}, "traffic")
    emu = hostbus.chip("pin27", "pulse")
    emu.pulses(4)
    time.sleep_ms(1100)
    d = read(s)
    eq(d["vehicles"], 4, "vehicles")
    eq(d["period_s"], 1, "period_s")
    emu.bounce()  # one vehicle, a bouncing relay contact: three edges within a millisecond
    emu.pulses(2)
    d = read(s)
    eq(d["vehicles"], 3, "bounce counted once")
    d = read(s)
    eq(d["vehicles"], 0, "nothing in an empty period")
    eq(d["period_s"], 1, "never below 1 s")


def test_pulses_counted_in_hardware_none_merged():
    # A PCNT unit counts on its own: a burst of pulses the CPU could not have served one by
    # one (the emulator hands them over at once) all count, and reading clears the count.
    s = one({"type": "pulse", "pin": 26, "counter": 1}, "traffic")
    emu = hostbus.chip("pin26", "pulse")
    emu.pulses(40)
    eq(read(s)["vehicles"], 40, "every pulse of the burst")
    eq(read(s)["vehicles"], 0, "cleared at each reading")
    # Its glitch filter is microseconds: a bouncing relay contact counts every edge, which
    # is why relays stay on the interrupt (min_gap_ms).
    emu.bounce()
    eq(read(s)["vehicles"], 3, "a relay's bounces")
    objs, errors = sensors.build([{"type": "pulse", "counter": 1, "min_gap_ms": 50}],
                                 "traffic", 1)
    assert not objs and len(errors) == 1 and "filter_ns" in errors[0], errors


def test_pulse_output_stuck_active_is_a_fault():
    s = one({"type": "pulse", "pin": 14, "edge": "rising"}, "traffic")
    emu = hostbus.chip("pin14", "pulse")
    emu.pulses(1)
    eq(read(s)["vehicles"], 1, "rising edges")
    with setting(pulse, "STUCK_MS", 300):
        emu.fault = "stuck"
        poll_until(s, lambda d: s.fault == "stuck", 2500, "stuck output")
        emu.fault = None
        poll_until(s, lambda d: "vehicles" in d, 2500, "recovery")


@in_tmpdir  # the learnt baseline goes to bay.BASE_FILE in the cwd
def test_parking_hysteresis_ignores_a_passing_car():
    s = one({"type": "bay", "dwell_s": 1, "threshold": 300}, "parking")
    emu = hostbus.chip("i2c0.13", "qmc5883l")
    emu.auto_traffic = False
    emu.occupied = False
    poll_for(s, 600)
    eq(read(s), {"occupied": False}, "empty bay")
    emu.pass_car(700)  # a car drives past: a strong disturbance for 0.7 s
    t0 = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), t0) < 1800:
        s.poll(time.ticks_ms())
        eq(read(s), {"occupied": False}, "a passing car does not flip the bay")
        time.sleep_ms(50)
    assert s.dev < 50, "the disturbance has gone: %r" % s.dev
    emu.occupied = True
    t0 = time.ticks_ms()
    poll_until(s, lambda d: d["occupied"], 3000, "the parked car")
    assert time.ticks_diff(time.ticks_ms(), t0) >= 900, "only after the dwell time"
    emu.occupied = False
    poll_for(s, 400)  # the driver leaves... and comes back within the dwell time
    emu.occupied = True
    poll_for(s, 1300)
    eq(read(s), {"occupied": True}, "a short gap does not free the bay")
    emu.occupied = False
    poll_until(s, lambda d: not d["occupied"], 3000, "the bay freed")


@in_tmpdir
def test_parking_baseline_is_kept_and_the_first_reading_decides():
    s = one({"type": "bay", "dwell_s": 5, "threshold": 300}, "parking")
    emu = hostbus.chip("i2c0.13", "qmc5883l")
    emu.auto_traffic = False
    emu.occupied = False
    poll_until(s, lambda d: "occupied" in d, what="the empty bay learnt")
    eq(read(s), {"occupied": False}, "empty bay")
    # A reset or a deep-sleep wake with a car in the bay: the baseline is the empty bay's,
    # kept in flash, and the first reading says occupied at once (no 5 s dwell).
    s = one({"type": "bay", "dwell_s": 5, "threshold": 300}, "parking")
    emu = hostbus.chip("i2c0.13", "qmc5883l")  # the bus built again: the same chip, anew
    emu.auto_traffic = False
    emu.occupied = True
    t0 = time.ticks_ms()
    poll_until(s, lambda d: d.get("occupied") is True, 1500, "the parked car at the start")
    assert time.ticks_diff(time.ticks_ms(), t0) < s.wait_ms, "within the wake's wait"


@in_tmpdir
def test_parking_missing_magnetometer_and_recovery():
    s = one({"type": "bay"}, "parking")
    emu = hostbus.chip("i2c0.13", "qmc5883l")
    emu.auto_traffic = False
    emu.occupied = False
    poll_until(s, lambda d: "occupied" in d, what="first reading")
    emu.fault = "missing"
    poll_until(s, lambda d: s.fault == "no_ack", what="missing chip")
    emu.fault = None
    hostbus.chip("i2c0.13").r[0x09] = 0  # it lost its configuration (power cut)
    poll_until(s, lambda d: "occupied" in d and s.fault is None, what="recovery")
    emu.r[0x09] = 0  # a brown-out of the chip alone: standby, but it still answers
    poll_for(s, 2600)
    eq(emu.r[0x09], 0x1D, "set up again: continuous mode")
    poll_until(s, lambda d: "occupied" in d and s.fault is None, what="data again")


def test_pzem_request_frame_and_meter_values():
    eq(pzem.frame((1, 4, 0, 0, 0, 10)), b"\x01\x04\x00\x00\x00\x0a\x70\x0d",
       "the PZEM-004T v3 request")
    s = one({"type": "lamp", "auto": False}, "streetlight")
    emu = hostbus.chip("uart1", "pzem")
    emu.watts = 73.4
    d = read(s)
    eq(s.fault, None, "fault")
    eq(d["lamp_on"], False, "relay off at start")
    eq(d["power"], 73.4, "power W")
    e0 = d["energy"]
    assert type(e0) is int and e0 > 9000, e0
    eq(s.values[0], 230.1, "voltage V")
    near(s.values[1], 73.4 / 230, 0.001, "current A")
    eq((s.values[4], s.values[5]), (50.0, 0.95), "frequency, power factor")
    emu.watts = None  # the lamp behind the relay
    s.set_lamp(True)
    d = read(s)
    eq(d["lamp_on"], True, "relay on")
    assert 35 < d["power"] < 130, d
    emu.wh += 2.0
    eq(read(s)["energy"], e0 + 2, "the meter counts up")
    s.set_lamp(False)
    d = read(s)
    eq((d["lamp_on"], d["power"]), (False, 0.0), "off")


def test_pzem_crc_errors_silence_and_wrong_address():
    s = one({"type": "lamp", "auto": False}, "streetlight")
    emu = hostbus.chip("uart1", "pzem")
    u = s.meter.uart
    u.write(b"\x01\x04\x00\x00\x00\x0a\x70\x0e")  # a request with a wrong CRC
    time.sleep_ms(40)
    eq(u.any(), 0, "the meter ignores a corrupt request")
    emu.fault = "checksum"
    eq(s.read(1), [("lamp_on", False)], "the relay state is still known")
    eq(s.fault, "checksum", "CRC of the answer")
    emu.fault = "missing"
    s.read(1)
    eq(s.fault, "timeout", "no answer")
    emu.fault = None
    emu.addr = 2  # a meter set to another Modbus address
    s.read(1)
    eq(s.fault, "timeout", "another address does not answer")
    emu.addr = 1
    assert "power" in read(s) and s.fault is None, "recovered"


# The lamp keeps the schedule's decision in a file (lamp.STATE): each lamp check runs in a
# folder of its own.
@in_tmpdir
def test_lamp_follows_dusk_and_dawn_and_remote_commands():
    noon = 1750507200000  # 2025-06-21 12:00 UTC
    near(lamp.sun_altitude(noon, 52.37, 4.9), 61.0, 0.6, "midsummer noon in Amsterdam")
    near(lamp.sun_altitude(noon - 43200000, 52.37, 4.9), -14.1, 0.6, "midnight")
    assert lamp.sun_altitude(noon, -33.9, 18.4) < 35, "winter in Cape Town"
    s = one({"type": "lamp", "pzem": None}, "streetlight")
    night = lamp.sun_altitude(time.time() * 1000, 52.37, 4.9) < -3
    eq(read(s), {"lamp_on": night}, "the schedule now")
    s.set_lamp(not night)
    eq(read(s), {"lamp_on": not night}, "a remote command until the next dusk or dawn")
    s.set_lamp(None)
    eq(read(s), {"lamp_on": night}, "back to the schedule")


@in_tmpdir
def test_lamp_is_lit_until_the_clock_is_known():
    # A street must not stay dark because WiFi or NTP is down after power-on: without a valid
    # clock the schedule cannot say, and the lamp is on; once the time is known it decides.
    saved = clock._anchor
    clock._anchor = [0, clock.ticks()]  # 1970: no NTP yet
    try:
        s = one({"type": "lamp", "pzem": None}, "streetlight")
        eq(read(s), {"lamp_on": True}, "lit without a clock")
        clock._anchor = [int(time.time() * 1000), clock.ticks()]
        s.next = time.ticks_ms()  # the schedule looks every 30 s: now
        night = lamp.sun_altitude(time.time() * 1000, 52.37, 4.9) < -3
        eq(read(s), {"lamp_on": night}, "the schedule once the time is known")
    finally:
        clock._anchor = saved


@in_tmpdir
def test_a_reset_keeps_the_lamp_as_the_schedule_last_set_it():
    # The schedule decided (the time was known); the board resets and starts without the
    # time (no WiFi yet): the relay starts at that decision, not lit by default, and the
    # schedule takes over again once the time is known.
    s = one({"type": "lamp", "pzem": None}, "streetlight")
    night = lamp.sun_altitude(time.time() * 1000, 52.37, 4.9) < -3
    eq(read(s), {"lamp_on": night}, "the schedule now")
    with open(lamp.STATE) as f:
        eq(f.read(), "1" if night else "0", "its decision kept in flash")
    eq(lamp.start_level(True), 1 if night else 0, "the relay's level at the next start")
    saved = clock._anchor
    clock._anchor = [0, clock.ticks()]  # the next start: no NTP yet
    try:
        s = one({"type": "lamp", "pzem": None}, "streetlight")
        eq(s.relay.value(), 1 if night else 0, "the relay as it was, from the start")
        eq(read(s), {"lamp_on": night}, "kept without a clock")
    finally:
        clock._anchor = saved
    os.remove(lamp.STATE)
    eq(lamp.start_level(True), 1, "no decision yet: lit")
    eq(lamp.start_level(False), 0, "commands only: off")


def test_water_level_median_ignores_an_outlier_ping():
    s = one({"type": "water", "mount_cm": 600, "pings": 5}, "water")
    emu = hostbus.chip("uart2", "water")
    emu.level_cm = 123.4
    poll_for(s, 700)
    emu.outliers = [350]  # a bird under the sensor: 35 cm
    poll_for(s, 300)
    d = read(s)
    near(d["water_level"], 123.4, 0.6, "level = mount - median distance")
    emu.level_cm = 200.0
    d = poll_until(s, lambda d: abs(d["water_level"] - 200.0) < 0.6, what="a rising river")


def test_water_checksum_and_silence():
    s = one({"type": "water", "mount_cm": 450}, "water")
    emu = hostbus.chip("uart2", "water")
    emu.mount = 450  # mounted as configured
    emu.level_cm = 100.0
    poll_until(s, lambda d: "water_level" in d, what="pings")
    emu.fault = "checksum"
    poll_until(s, lambda d: s.fault == "checksum", what="checksum fault")
    eq(s.read(1), [], "no sample")
    emu.fault = "missing"
    with setting(water, "STALE_MS", 300):
        poll_until(s, lambda d: s.fault == "timeout", what="silence")
        emu.fault = None
        d = poll_until(s, lambda d: "water_level" in d, what="recovery")
        near(d["water_level"], 100.0, 0.6, "450 cm mount - 350 cm distance")


def test_soil_two_point_calibration_clamped():
    s = one({"type": "soil", "adc": 34, "dry": 50000, "wet": 20000}, "soil")
    emu = hostbus.chip("adc34", "soil")
    for raw, pct in ((35000, 50.0), (50000, 0.0), (20000, 100.0), (56000, 0.0), (12000, 100.0),
                     (41000, 30.0)):
        emu.raw = raw
        eq(read(s), {"soil_moisture": pct}, "raw %d" % raw)
    emu.raw = None
    emu.fault = "missing"
    eq(s.read(1), [], "unplugged")
    eq(s.fault, "range", "fault")


@in_tmpdir  # its lamp keeps lamp.STATE in the cwd
def test_every_kind_default_wiring_gives_contract_fields():
    objs = build([{"type": "noise"}, {"type": "pulse"}, {"type": "bay"}, {"type": "lamp"},
                  {"type": "water", "mount_cm": 600}, {"type": "soil"}], "noise")
    t0 = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), t0) < 700:
        for s in objs:
            s.poll(time.ticks_ms())
        time.sleep_ms(20)
    got = {}
    for s in objs:
        got.update(read(s))
        eq(s.fault, None, s.name)
    for k in ("laeq", "lamax", "lamin", "vehicles", "period_s", "occupied", "lamp_on", "power",
              "energy", "water_level", "soil_moisture"):
        assert k in got, (k, got)
