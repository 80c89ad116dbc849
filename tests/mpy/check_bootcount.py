# The boot counter in flash only ever goes up.
import os

from mpytest import eq, in_tmpdir, rmtree, tmpdir
from urbanpulse_fw import bootcount


def _with_dir(fn):
    d = tmpdir("bootcount")
    try:
        fn(d + "/bootcount")
    finally:
        rmtree(d)


def test_first_boot_is_one_then_increments():
    def body(path):
        eq(bootcount.read(path), 0, "no file yet")
        eq(bootcount.bump(path), 1, "first boot")
        eq(bootcount.bump(path), 2, "second boot")
        eq(bootcount.read(path), 2, "read back")
        eq(sorted(os.listdir(path.rsplit("/", 1)[0])), ["bootcount"], "no temporary left")
    _with_dir(body)


def test_survives_a_cut_before_rename():
    def body(path):
        bootcount.bump(path)
        with open(path + ".tmp", "w") as f:
            f.write("5\n")  # written, then power lost before the rename
        eq(bootcount.bump(path), 6, "the newer temporary counts")
    _with_dir(body)


def test_garbage_file_does_not_crash():
    def body(path):
        with open(path, "w") as f:
            f.write("not a number")
        eq(bootcount.bump(path), 1, "starts again")
    _with_dir(body)


@in_tmpdir
def test_unplanned_resets_are_counted_in_a_row_and_a_power_on_starts_afresh():
    from urbanpulse_fw import startup

    causes = ("crash", "wdt", "deepsleep", "reboot", "config", "fatal", "memory", "power",
              "start")
    eq([startup.crashes(c) for c in causes], [1, 2, 2, 2, 2, 3, 4, 0, 1],
       "crashes, watchdog resets, fatal errors, out of memory and failed starts count; "
       "a wake, a reboot or a config applied do not; a power-on starts afresh")
