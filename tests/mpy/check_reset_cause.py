# The reset cause a start reports (hwmisc.reset_cause): the chip's, or the firmware's intent
# written to RTC memory by hw.reset before it reset the board. On the host the chip's side
# is the file reset_cause, RTC memory the file rtcmem, both in the board's folder (the cwd).

from mpytest import eq, in_tmpdir
from urbanpulse_fw import hw, hwmisc


def _write(name, text):
    with open(name, "w") as f:
        f.write(text)


def test_the_intent_says_why_a_hard_reset_happened_once():
    def body():
        _write("rtcmem", "7 reboot")  # a wake count, then the intent
        _write("reset_cause", "hard")
        eq(hwmisc.reset_cause(), "reboot", "what the firmware meant")
        eq(hw.rtc_memory(), b"7", "the intent told once, the wake count kept")
        _write("reset_cause", "hard")
        eq(hwmisc.reset_cause(), "crash", "a hard reset nobody asked for: a panic")
    in_tmpdir(body)()


def test_the_chip_says_power_watchdog_and_deep_sleep():
    def body():
        eq(hwmisc.reset_cause(), "power", "nothing written: power on")
        _write("rtcmem", "3 config")
        _write("reset_cause", "wdt")
        eq(hwmisc.reset_cause(), "wdt", "the watchdog, whatever was meant before")
        eq(hw.rtc_memory(), b"3", "an old intent forgotten")
    in_tmpdir(body)()
