# Counters kept in flash that must never go back: the boot counter ((device_id, boot, seq)
# names a telemetry message) and the last accepted command counter (cmdauth.py). Written to a
# temporary file and renamed over the old one.
import os


def _read(path):
    try:
        with open(path) as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


def read(path="bootcount"):
    # After a power cut between write and rename the temporary file may be the newer one.
    return max(_read(path), _read(path + ".tmp"))


def write(path, n):
    with open(path + ".tmp", "w") as f:
        f.write("%d\n" % n)
    try:
        os.rename(path + ".tmp", path)
    except OSError:
        # FAT cannot rename over an existing file.
        try:
            os.remove(path)
        except OSError:
            pass
        os.rename(path + ".tmp", path)


def bump(path="bootcount"):
    """Increment the counter and return the new value (1 on the very first boot)."""
    n = read(path) + 1
    write(path, n)
    return n
