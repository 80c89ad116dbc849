# Sent by `urbanpulse flash` to the board over mpremote with a call appended: the boot counter
# survives an erase this way (read before, written back after), and only ever goes up.


def read_boot_count(at_least: int = 0) -> int:
    n = at_least
    for p in ("bootcount", "bootcount.tmp"):
        try:
            with open(p) as f:
                n = max(n, int(f.read()))
        except Exception:
            pass
    return n


def write_boot_count(n: int) -> None:
    with open("bootcount", "w") as f:
        f.write("%d\n" % n)
