"""KPI formulas against worked examples (EPA, EU END, NOAA/USNO) and the edges operators hit:
empty windows, one sample, gaps, meter resets, midnight and DST days."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from urbanpulse.config import ConfigError, load_settings
from urbanpulse.kpi import aqi, network, parking, streetlight, traffic, water
from urbanpulse.kpi.noise import DayPeriods, energetic_mean, lden, noise_day
from urbanpulse.kpi.sun import darkness, daylight, sun_day
from urbanpulse.kpi.windows import (
    HOUR_MS,
    Window,
    local_day_window,
    local_days_touching,
    spans,
)

AMS = ZoneInfo("Europe/Amsterdam")
MIN = 60_000


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0,
       tz: ZoneInfo | None = None) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=tz or UTC).timestamp() * 1000)


# -- AQI ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pm25", "expected"),
    [
        (35.9, 102),  # EPA's example for the 2024 breakpoints
        (12.0, 56),
        (9.0, 50),
        (9.09, 50),  # truncated to 9.0: not in the 9.0-9.1 gap
        (35.45, 100),  # truncated to 35.4
        (0.0, 0),
        (325.4, 500),
        (325.5, 500),  # above the top breakpoint
        (1500.0, 500),
    ],
)
def test_aqi_pm25_epa_2024(pm25: float, expected: int) -> None:
    assert aqi.aqi_pm25(pm25) == expected


@pytest.mark.parametrize(
    ("pm10", "expected"),
    [(210.0, 128), (54.9, 50), (55.0, 51), (604.0, 500), (605.0, 500), (150.0, 98)],
)
def test_aqi_pm10(pm10: float, expected: int) -> None:
    assert aqi.aqi_pm10(pm10) == expected


def test_aqi_takes_the_larger_and_names_it_and_its_category() -> None:
    result = aqi.aqi(12.0, 210.0)
    assert result is not None
    assert (result.aqi, result.aqi_pm25, result.aqi_pm10) == (128, 56, 128)
    assert result.dominant == "pm10"
    assert result.category == "Unhealthy for Sensitive Groups"
    only25 = aqi.aqi(35.9, None)
    assert only25 is not None and only25.dominant == "pm25" and only25.aqi_pm10 is None
    assert aqi.aqi(None, None) is None
    assert [aqi.category(i) for i in (0, 50, 51, 101, 151, 201, 301, 500)] == [
        "Good", "Good", "Moderate", "Unhealthy for Sensitive Groups", "Unhealthy",
        "Very Unhealthy", "Hazardous", "Hazardous",
    ]
    with pytest.raises(ValueError, match="negative"):
        aqi.aqi_pm25(-1)


# -- noise ----------------------------------------------------------------------------------
def test_energetic_mean_is_not_the_arithmetic_mean() -> None:
    mean = energetic_mean([60, 70])
    assert mean is not None and round(mean, 1) == 67.4
    assert energetic_mean([63.0]) == pytest.approx(63.0)
    assert energetic_mean([]) is None


def test_lden_worked_examples() -> None:
    # Each weighted period contributes 10^6: Lden = 60 dB.
    assert lden(60, 55, 50) == pytest.approx(60.0)
    # A constant level L gives L + 6.4 dB (the penalties).
    assert lden(60, 60, 60) == pytest.approx(66.4, abs=0.05)


def day_of_samples(day: date, levels: dict[str, float], step_min: int = 10) -> list[
    tuple[int, float]
]:
    """Samples every step_min over the local day, at the period's level."""
    window = local_day_window(day, AMS)
    out = []
    for t in range(window.start, window.end, step_min * MIN):
        hour = datetime.fromtimestamp(t / 1000, AMS).hour
        period = "day" if 7 <= hour < 19 else "evening" if 19 <= hour < 23 else "night"
        out.append((t, levels[period]))
    return out


def test_lden_of_a_normal_local_day() -> None:
    day = date(2026, 6, 10)
    result = noise_day(day_of_samples(day, {"day": 60, "evening": 55, "night": 50}), day, AMS,
                       DayPeriods())
    assert (result.lday, result.levening, result.lnight) == pytest.approx((60, 55, 50))
    assert result.hours == (12, 4, 8)
    assert result.lden == pytest.approx(60.0)
    assert result.samples == 24 * 6


@pytest.mark.parametrize(
    ("day", "night_hours", "day_hours"),
    [(date(2026, 3, 29), 7, 23), (date(2026, 10, 25), 9, 25)],
)
def test_lden_on_dst_days_weighs_the_real_night(
    day: date, night_hours: int, day_hours: int
) -> None:
    window = local_day_window(day, AMS)
    assert window.hours == day_hours
    result = noise_day(day_of_samples(day, {"day": 60, "evening": 60, "night": 60}), day, AMS,
                       DayPeriods())
    assert result.hours == (12, 4, night_hours)
    expected = 10 * math.log10(
        (12 * 10**6 + 4 * 10**6.5 + night_hours * 10**7) / day_hours
    )
    assert result.lden == pytest.approx(expected)
    assert result.samples == day_hours * 6


def test_lden_needs_all_three_periods_and_hours_are_configurable() -> None:
    day = date(2026, 6, 10)
    only_day = [(t, v) for t, v in day_of_samples(day, {"day": 60, "evening": 0, "night": 0})
                if v == 60]
    result = noise_day(only_day, day, AMS, DayPeriods())
    assert result.lday == pytest.approx(60) and result.lden is None and result.lnight is None
    periods = DayPeriods(6, 18, 22)
    assert noise_day([], day, AMS, periods).hours == (12, 4, 8)
    with pytest.raises(ValueError, match="day_start_h < evening_start_h"):
        DayPeriods(19, 7, 23)


def test_a_sample_just_before_and_after_local_midnight_belongs_to_its_own_day() -> None:
    day = date(2026, 6, 10)
    late = ms(2026, 6, 10, 23, 30, tz=AMS)
    early_next = ms(2026, 6, 11, 0, 30, tz=AMS)
    first = noise_day([(late, 50.0), (early_next, 70.0)], day, AMS, DayPeriods())
    second = noise_day([(late, 50.0), (early_next, 70.0)], date(2026, 6, 11), AMS, DayPeriods())
    assert first.lnight == pytest.approx(50) and first.samples == 1
    assert second.lnight == pytest.approx(70) and second.samples == 1
    # Amsterdam's summer day starts at 22:00 UTC the evening before.
    assert local_day_window(day, AMS).start == ms(2026, 6, 9, 22)
    # The UTC hour 21:00-22:00Z on 10 June is 23:00-24:00 local: day 10 only; 22:00Z is day 11.
    assert local_days_touching([ms(2026, 6, 10, 21)], AMS) == [day]
    assert local_days_touching([ms(2026, 6, 10, 22)], AMS) == [date(2026, 6, 11)]


# -- parking --------------------------------------------------------------------------------
def test_parking_occupancy_is_time_weighted() -> None:
    window = Window(0, HOUR_MS)
    hold = 10 * MIN
    # Occupied for 15 min, free for 45 min, reported every 5 min.
    samples = [(t * MIN, t < 15) for t in range(0, 60, 5)]
    bay = parking.bay_time(samples, window, hold)
    assert (bay.occupied_ms, bay.known_ms) == (15 * MIN, 60 * MIN)
    # A state before the window carries in; a second bay always occupied.
    other = parking.bay_time([(-2 * MIN, True)] + [(t * MIN, True) for t in range(3, 60, 5)],
                             window, hold)
    assert other.known_ms == 60 * MIN
    assert parking.occupancy([bay, other]) == pytest.approx(75 / 120)


def test_parking_gap_one_sample_and_empty() -> None:
    window = Window(0, HOUR_MS)
    hold = 3 * MIN
    # Occupied at 0, then silent 30 min (longer than the hold): unknown, not occupied.
    bay = parking.bay_time([(0, True), (30 * MIN, False)], window, hold)
    assert (bay.occupied_ms, bay.known_ms) == (3 * MIN, 6 * MIN)
    assert parking.occupancy([bay]) == pytest.approx(0.5)
    one = parking.bay_time([(59 * MIN, True)], window, hold)
    assert (one.occupied_ms, one.known_ms) == (MIN, MIN)
    assert parking.occupancy([]) is None
    assert parking.occupancy([parking.bay_time([], window, hold)]) is None


# -- traffic --------------------------------------------------------------------------------
def test_traffic_flow_is_vehicles_per_hour_of_counted_time() -> None:
    result = traffic.flow([(10, 60), (20, 60), (0, 60)])
    assert result.vehicles == 30 and result.flow_vph == pytest.approx(600)
    # A gap: 30 vehicles in 15 counted minutes is 120 per hour, not 30.
    assert traffic.flow([(30, 900)]).flow_vph == pytest.approx(120)
    empty = traffic.flow([])
    assert empty.vehicles == 0 and empty.flow_vph is None


# -- street lighting ------------------------------------------------------------------------
def test_meter_energy_survives_a_reset_and_never_goes_negative() -> None:
    readings = [(0, 990.0), (10, 1000.0), (20, 1010.0), (30, 3.0), (40, 8.0)]
    # Baseline 990 before the window: 10 + 10 + 3 (after the reset, from 0) + 5.
    assert streetlight.meter_energy(readings, since_ms=5) == pytest.approx(28)
    assert streetlight.meter_energy(readings, since_ms=0) == pytest.approx(28)
    assert streetlight.meter_energy([(0, 5.0), (1, 0.0)], since_ms=0) == 0
    assert streetlight.meter_energy([(0, 5.0)], since_ms=0) == 0
    assert streetlight.meter_energy([], since_ms=0) == 0


def test_lamp_faults_against_sunrise_and_sunset() -> None:
    lat, lon = 52.3676, 4.9041
    kwargs = dict(lat=lat, lon=lon, hold_ms=3 * MIN, margin_ms=30 * MIN, fault_min_h=0.25)
    noon = Window(ms(2026, 6, 21, 10), ms(2026, 6, 21, 11))
    on_at_noon = [(noon.start + k * MIN, True) for k in range(0, 60)]
    lamp = streetlight.lamp_window(on_at_noon, [(noon.start, 100.0), (noon.end - MIN, 150.0)],
                                   noon, **kwargs)  # type: ignore[arg-type]
    assert lamp.burning_h == pytest.approx(1.0)
    assert lamp.day_on_h == pytest.approx(1.0) and lamp.night_off_h == 0
    assert lamp.fault and lamp.energy_wh == pytest.approx(50)
    night = Window(ms(2026, 6, 21, 23), ms(2026, 6, 22, 0))  # 01:00 local, dark
    off_at_night = [(night.start + k * MIN, False) for k in range(0, 60)]
    lamp = streetlight.lamp_window(off_at_night, [], night, **kwargs)  # type: ignore[arg-type]
    assert lamp.night_off_h == pytest.approx(1.0) and lamp.burning_h == 0 and lamp.fault
    on_at_night = [(t, True) for t, _ in off_at_night]
    lamp = streetlight.lamp_window(on_at_night, [], night, **kwargs)  # type: ignore[arg-type]
    assert not lamp.fault and lamp.day_on_h == 0 and lamp.night_off_h == 0
    # Within the margin after sunset (20:06Z), a lamp still off is not a fault.
    dusk = Window(ms(2026, 6, 21, 20), ms(2026, 6, 21, 20, 30))
    assert darkness(dusk, lat, lon, 30 * MIN) == []
    assert daylight(dusk, lat, lon, 30 * MIN) == []


# -- sun ------------------------------------------------------------------------------------
def _utc(t_ms: int) -> datetime:
    return datetime.fromtimestamp(t_ms / 1000, UTC)


@pytest.mark.parametrize(
    ("day", "lat", "lon", "sunrise", "sunset"),
    [
        # Amsterdam, NOAA Solar Calculator: 05:18 / 22:06 CEST, 08:48 / 16:29 CET.
        (date(2026, 6, 21), 52.3676, 4.9041, datetime(2026, 6, 21, 3, 18, tzinfo=UTC),
         datetime(2026, 6, 21, 20, 6, tzinfo=UTC)),
        (date(2026, 12, 21), 52.3676, 4.9041, datetime(2026, 12, 21, 7, 48, tzinfo=UTC),
         datetime(2026, 12, 21, 15, 29, tzinfo=UTC)),
        # USNO "Almanac for Computers" worked example: Wayne NJ, 25 June, sunrise 9h26m UT.
        (date(1990, 6, 25), 40.9, -74.3, datetime(1990, 6, 25, 9, 26, tzinfo=UTC), None),
    ],
)
def test_sunrise_sunset_match_reference_values(
    day: date, lat: float, lon: float, sunrise: datetime, sunset: datetime | None
) -> None:
    result = sun_day(day, lat, lon)
    assert result.sunrise is not None and result.sunset is not None
    assert abs(_utc(result.sunrise) - sunrise) <= timedelta(minutes=2)
    if sunset is not None:
        assert abs(_utc(result.sunset) - sunset) <= timedelta(minutes=2)


def test_polar_day_and_night() -> None:
    assert sun_day(date(2026, 6, 21), 80, 10).polar == "day"
    assert sun_day(date(2026, 12, 21), 80, 10).polar == "night"
    window = Window(ms(2026, 6, 21), ms(2026, 6, 22))
    assert daylight(window, 80, 10) == [window]
    assert darkness(window, 80, 10) == []


# -- water ----------------------------------------------------------------------------------
def test_water_level_rate_of_rise_and_crossings() -> None:
    samples = [(0, 100.0), (30 * MIN, 110.0), (60 * MIN - 1, 120.0)]
    result = water.water_window(samples)
    assert result is not None
    assert (result.level, result.level_max) == (120.0, 120.0)
    assert result.rise_cm_h == pytest.approx(20, rel=1e-3)
    one = water.water_window([(0, 80.0)])
    assert one is not None and one.rise_cm_h is None
    assert water.water_window([]) is None
    levels = [(-10, 90.0), (0, 105.0), (10, 100.0), (20, 99.0), (30, 100.0)]
    found = water.crossings(levels, 100.0, since_ms=0)
    assert [(c.t, c.direction, c.level) for c in found] == [
        (0, "up", 105.0), (20, "down", 99.0), (30, "up", 100.0)]
    # Crossings before the window are not this window's.
    assert [c.t for c in water.crossings(levels, 100.0, since_ms=15)] == [20, 30]


# -- network --------------------------------------------------------------------------------
def test_completeness_and_capture_thresholds() -> None:
    assert network.completeness(45, 3600, 60).valid  # 75 %
    assert not network.completeness(44, 3600, 60).valid
    assert network.completeness(120, 3600, 60).completeness == 1.0
    empty = network.completeness(0, 3600, 60)
    assert empty.completeness == 0 and not empty.valid and empty.expected == 60
    assert network.capture(22, 24).good  # 91.7 %
    assert not network.capture(21, 24).good  # 87.5 %
    assert network.capture(21, 23).good  # a 23-hour DST day
    assert network.availability(3, 4) == 0.75
    assert network.availability(0, 0) is None


def test_spans_merge_adjacent_hours() -> None:
    h = HOUR_MS
    assert spans([3 * h, h, 2 * h, 7 * h]) == [Window(h, 4 * h), Window(7 * h, 8 * h)]
    assert spans([]) == []


def test_kpi_settings_validate_with_clear_errors(tmp_path: Path) -> None:
    config = tmp_path / "urbanpulse.toml"
    config.write_text('[kpi]\ntimezone = "Mars/Olympus"\n')
    with pytest.raises(ConfigError, match="'Mars/Olympus' is not a known IANA time zone"):
        load_settings(config)
    config.write_text("[kpi]\nday_start_h = 20\n")
    with pytest.raises(ConfigError, match="day_start_h < evening_start_h"):
        load_settings(config)
    config.write_text("[kpi]\nlookback_h = 0\n")
    with pytest.raises(ConfigError, match=r"\[kpi\] lookback_h = 0"):
        load_settings(config)


def test_registry_threshold_cm_column_csv_and_toml(tmp_path: Path) -> None:
    from urbanpulse.registry.devices import RegistryError, load_registry

    csv_path = tmp_path / "devices.csv"
    csv_path.write_text("device_id,kind,district,threshold_cm\n"
                        "water-s-01,water,south,150\nair-s-01,air,south,\n")
    devices = {d.device_id: d for d in load_registry(csv_path).devices}
    assert devices["water-s-01"].threshold_cm == 150 and devices["air-s-01"].threshold_cm is None
    toml_path = tmp_path / "devices.toml"
    toml_path.write_text('[[device]]\ndevice_id = "water-s-02"\nkind = "water"\n'
                         'district = "south"\nthreshold_cm = 212.5\n')
    assert load_registry(toml_path).devices[0].threshold_cm == 212.5
    csv_path.write_text("device_id,kind,district,threshold_cm\nwater-s-01,water,south,high\n")
    with pytest.raises(RegistryError, match="line 2: threshold_cm='high'"):
        load_registry(csv_path)
