# Host stand-in for MicroPython's `ntptime` (never copied to a board). The host's clock is
# right already; with an emulated clock (config "host_clock", urbanpulse_fw/clock.py) that
# starts unset, settime() sets it to the real time, as NTP would set an ESP32's RTC. Files in
# the board's folder emulate failures (tests): `ntp_down` an unreachable server (OSError),
# `ntp_hang` a call that never returns (what the watchdog is for), `ntp_servers` the names of
# the servers that answer (one per line; any, without the file).
import os
import time

host = "pool.ntp.org"  # as in MicroPython's ntptime; the firmware sets it


def settime():
    names = os.listdir()
    while "ntp_hang" in names:
        time.sleep_ms(100)
    if "ntp_down" in names:
        raise OSError("ETIMEDOUT")
    if "ntp_servers" in names:
        with open("ntp_servers") as f:
            if host not in f.read().split():
                raise OSError("ETIMEDOUT")
    from urbanpulse_fw import clock

    if clock._anchor is not None and not clock.is_valid(clock.now_ms()):
        clock._anchor = [time.time_ns() // 1000000, clock.ticks()]  # the emulated wall clock
