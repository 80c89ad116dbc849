# Air-quality drivers (BME280, PMS5003, SCD41) against the emulated chips: values, the
# datasheets' formulas and checksums, missing chips, stuck buses, and recovery.
import hostbus
from drivertest import near, one, poll_for, poll_until, read
from emu_bme280 import H_CAL, P_CAL, T_CAL
from mpytest import eq, setting
from urbanpulse_fw.drivers import pms5003, pzem, scd41


def test_crc_reference_values():
    eq(scd41.crc8_sensirion(b"\xbe\xef"), 0x92, "Sensirion datasheet example")
    eq(pzem.frame(b"123456789")[-2:], b"\x37\x4b", "CRC-16/MODBUS check value, low byte first")


def _float_reference(adc_t, adc_p, adc_h):
    """The datasheet's floating-point compensation (BME280 datasheet 8.1), written apart
    from the driver's integer version."""
    t1, t2, t3 = T_CAL
    p1, p2, p3, p4, p5, p6, p7, p8, p9 = P_CAL
    h1, h2, h3, h4, h5, h6 = H_CAL
    v1 = (adc_t / 16384.0 - t1 / 1024.0) * t2
    v2 = (adc_t / 131072.0 - t1 / 8192.0) * (adc_t / 131072.0 - t1 / 8192.0) * t3
    tf = v1 + v2
    v1 = tf / 2.0 - 64000.0
    v2 = v1 * v1 * p6 / 32768.0
    v2 = v2 + v1 * p5 * 2.0
    v2 = v2 / 4.0 + p4 * 65536.0
    v1 = (p3 * v1 * v1 / 524288.0 + p2 * v1) / 524288.0
    v1 = (1.0 + v1 / 32768.0) * p1
    p = 1048576.0 - adc_p
    p = (p - v2 / 4096.0) * 6250.0 / v1
    p = p + (p9 * p * p / 2147483648.0 + p * p8 / 32768.0 + p7) / 16.0
    h = tf - 76800.0
    h = (adc_h - (h4 * 64.0 + h5 / 16384.0 * h)) * (
        h2 / 65536.0 * (1.0 + h6 / 67108864.0 * h * (1.0 + h3 / 67108864.0 * h)))
    h = h * (1.0 - h1 * h / 524288.0)
    return tf / 5120.0, p / 100, max(0.0, min(100.0, h))


def test_bme280_datasheet_worked_example():
    s = one({"type": "bme280"})
    emu = hostbus.chip("i2c0.118", "bme280")
    # Bosch's worked example (BMP280 datasheet 3.12, same T/P formulas): 25.08 degC,
    # 100653.27 Pa; humidity against the floating-point formula.
    emu.adc = (519888, 415148, 27500)
    d = read(s)
    eq(s.fault, None, "fault")
    eq(d["temperature"], 25.08, "temperature")
    near(d["pressure"], 1006.5327, 0.0051, "pressure hPa")
    t, p, h = _float_reference(519888, 415148, 27500)
    near(t, 25.08, 0.01, "float reference temperature")
    near(d["pressure"], p, 0.02, "pressure vs float formula")
    near(d["humidity"], h, 0.15, "humidity vs float formula")
    assert 20 < h < 80, h


def test_bme280_reads_the_emulated_air():
    s = one({"type": "bme280", "addr": 119})
    emu = hostbus.chip("i2c0.119", "bme280")
    for temp, hum, hpa in ((-12.3, 91.0, 987.65), (31.7, 22.4, 1032.1)):
        emu.fixed = {"temperature": temp, "humidity": hum, "pressure": hpa}
        d = read(s)
        near(d["temperature"], temp, 0.011, "temperature")
        near(d["humidity"], hum, 0.11, "humidity")
        near(d["pressure"], hpa, 0.011, "pressure")
    emu.fixed = None  # the simulated city's air: plausible values
    d = read(s)
    assert -40 < d["temperature"] < 50 and 5 <= d["humidity"] <= 100, d
    assert 950 < d["pressure"] < 1060, d


def test_bme280_missing_stuck_wrong_chip_and_recovery():
    s = one({"type": "bme280"})
    emu = hostbus.chip("i2c0.118", "bme280")
    emu.fixed = {"temperature": 20.0, "humidity": 50.0, "pressure": 1000.0}
    for fault, want in (("missing", "no_ack"), ("stuck", "timeout")):
        emu.fault = fault
        eq(s.read(1), [], fault + ": no sample")
        eq(s.fault, want, fault)
        emu.fault = None
        eq(read(s)["temperature"], 20.0, "recovered from " + fault)
        eq(s.fault, None, "fault cleared")
    # The chip is replaced (power cut): configured again, from its own calibration.
    fresh = hostbus.attach("i2c0.118", type(emu)(2))
    fresh.fixed = {"temperature": 5.5, "humidity": 70.0, "pressure": 1010.0}
    emu.fault = "missing"
    s.read(1)
    eq(read(s)["temperature"], 5.5, "a new chip after a bus error")
    fresh.r[0xF2] = 0  # a brown-out of the sensor alone: humidity off, no bus error
    eq(s.read(1), [], "nothing measured")
    eq(s.fault, "range", "reset values")
    eq(read(s)["humidity"], 70.0, "set up again")
    fresh.r[0xD0] = 0x58  # a BMP280 (no humidity) soldered in by mistake
    fresh.fault = "stuck"
    s.read(1)
    fresh.fault = None
    eq(s.read(1), [], "wrong chip: no sample")
    eq(s.fault, "chip_id", "wrong chip")


def test_pms5003_frames_checksum_and_recovery():
    s = one({"type": "pms5003"})
    emu = hostbus.chip("uart2", "pms5003")
    emu.period_ms = 100
    emu.fixed = (7, 12, 19)
    d = poll_until(s, lambda d: "pm25" in d, what="a frame")
    eq(d, {"pm1": 7, "pm25": 12, "pm10": 19}, "atmospheric PM")
    emu.fault = "checksum"
    poll_until(s, lambda d: s.fault == "checksum", what="checksum fault")
    eq(s.read(1), [], "no sample from a corrupt frame")
    emu.fault = None
    emu.fixed = (30, 41, 77)
    d = poll_until(s, lambda d: d.get("pm10") == 77, what="recovery")
    eq(s.fault, None, "fault cleared")


def test_pms5003_resynchronises_after_noise_on_the_line():
    s = one({"type": "pms5003"})
    emu = hostbus.chip("uart2", "pms5003")
    emu.period_ms = 100000  # only the frames we put on the line
    good = emu.frame(3, 4, 5)
    emu.out = b"\x00\x42\x13\x42\x4d\x00" + good[:20] + b"\x42" + good + b"\x4d"
    d = read(s)
    eq(d, {"pm1": 3, "pm25": 4, "pm10": 5}, "the good frame found among noise")


def test_pms5003_silent_line_is_a_timeout():
    s = one({"type": "pms5003"})
    emu = hostbus.chip("uart2", "pms5003")
    emu.period_ms = 100
    poll_until(s, lambda d: "pm25" in d, what="a frame")
    emu.fault = "missing"
    with setting(pms5003, "STALE_MS", 300):
        poll_until(s, lambda d: s.fault == "timeout", what="timeout")
        emu.fault = None
        poll_until(s, lambda d: "pm25" in d, what="recovery")


def test_pms5003_sleeps_between_samples_minutes_apart():
    s = one({"type": "pms5003"})
    emu = hostbus.chip("uart2", "pms5003")
    emu.period_ms = 50
    emu.fixed = (4, 6, 9)
    poll_until(s, lambda d: "pm25" in d, what="a frame")
    eq(emu.commands, [], "no sleep at a short interval")
    with setting(pms5003, "WARM_MS", 300):
        s.interval_ms = 1500  # above 3 x the warm-up time: sleep between samples
        eq(read(s), {"pm1": 4, "pm25": 6, "pm10": 9}, "a sample, then sleep")
        eq((emu.commands, emu.sleeping), ([0], True), "sleep command (42 4D E4 00 00 01 73)")
        poll_for(s, 900)
        eq(emu.sleeping, True, "asleep until warm-up + margin before the next sample")
        emu.fixed = (5, 7, 11)
        poll_for(s, 400)  # woken 1.5 - 0.3 - 0.03 s after the sample
        eq((emu.commands, emu.sleeping), ([0, 1], False), "woken before the next sample")
        eq(read(s), {}, "no data and no fault while the fan spins up")
        eq(s.fault, None, "no fault")
        d = poll_until(s, lambda d: d.get("pm25") == 7, 2000, "stable data after warm-up")
        eq(d["pm10"], 11, "new values")


def test_scd41_periodic_measurement_crc_and_recovery():
    s = one({"type": "scd41", "th": True})
    emu = hostbus.chip("i2c0.98", "scd41")
    emu.period_ms = 300
    emu.start = 0  # still measuring from before a soft reset: the driver stops it first
    emu.fixed = (812, 23.5, 41.0)
    d = poll_until(s, lambda d: "co2" in d, what="a measurement")
    eq(d["co2"], 812, "co2 ppm")
    near(d["temperature"], 23.5, 0.01, "temperature")
    near(d["humidity"], 41.0, 0.01, "humidity")
    emu.fault = "checksum"
    poll_until(s, lambda d: s.fault == "checksum", what="CRC fault")
    eq(s.read(1), [], "no sample")
    emu.fault = None
    emu.fixed = (1500, 20.0, 50.0)
    poll_until(s, lambda d: d.get("co2") == 1500, what="recovery after CRC errors")
    emu.fault = "missing"
    poll_until(s, lambda d: s.fault == "no_ack", what="missing chip")
    hostbus.attach("i2c0.98", type(emu)(3)).fixed = (640, 20.0, 50.0)  # power cycled
    hostbus.chip("i2c0.98", "scd41").period_ms = 300
    d = poll_until(s, lambda d: d.get("co2") == 640, 4000, what="restarted measurement")


def test_scd41_restarts_after_a_power_cut_without_bus_errors():
    s = one({"type": "scd41"})
    emu = hostbus.chip("i2c0.98", "scd41")
    emu.period_ms = 200
    emu.fixed = (700, 20.0, 50.0)
    poll_until(s, lambda d: d.get("co2") == 700, what="a measurement")
    with setting(scd41, "STALE_MS", 800):
        emu.start = None  # idle after a power cut: answers, but never has data
        poll_until(s, lambda d: s.fault == "timeout", what="no new data")
        emu.fixed = (710, 20.0, 50.0)
        poll_until(s, lambda d: d.get("co2") == 710, 4000, what="started again")


def test_scd41_reports_co2_only_by_default_and_times_out_when_stuck():
    s = one({"type": "scd41"})
    emu = hostbus.chip("i2c0.98", "scd41")
    emu.period_ms = 200
    d = poll_until(s, lambda d: "co2" in d, what="a measurement")
    eq(sorted(d), ["co2"], "no temperature/humidity next to a BME280")
    assert 400 <= d["co2"] <= 5000, d
    emu.fault = "stuck"
    poll_until(s, lambda d: s.fault == "timeout", what="stuck bus")
    eq(s.read(1), [], "no sample")
    eq(s.fault, "timeout", "still stuck")
    emu.fault = None
    emu.start = None
    with setting(scd41, "STALE_MS", 600):
        emu.period_ms = 100000  # running, but no new data
        emu.start = 0
        poll_until(s, lambda d: s.fault == "timeout", what="stale data")
