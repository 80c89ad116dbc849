# Reads what an earlier start left in the flash spool (spool.py): its segment files, how many
# whole records each holds, how far the oldest was acknowledged, and whether the last one's
# end is whole. Used once per start by
# Spool(), then unloaded: its code would otherwise stay in RAM for nothing. Imports nothing
# from the firmware: Spool() hands it the record check (spool.valid), so no import circle.
import os


def scan(sp, valid):
    try:
        os.mkdir(sp.path)
    except OSError:
        pass
    nums = []
    for name in os.listdir(sp.path):
        if name.isdigit():
            nums.append(int(name))
    nums.sort()
    pos = (0, 0)
    try:
        with open(sp.path + "/pos") as f:
            x = f.read().split()
            pos = (int(x[0]), int(x[1]))
    except (OSError, ValueError, IndexError):
        pass
    clean = False
    for n in nums:
        start = pos[1] if n == pos[0] and not sp.segs else 0
        size = os.stat(sp._file(n))[6]
        k = 0
        clean = True  # every line whole: appends may go on in this segment
        with open(sp._file(n), "rb") as f:
            f.seek(start)
            while True:
                line = f.readline()
                if not line:
                    break
                clean = valid(line)
                if clean:
                    k += 1
        if not sp.segs:
            sp.pos = start
        sp.segs.append([n, size, k])
        sp.count += k
        sp.nbytes += size
    # The last segment goes on taking records if its end is whole (a deep-sleep board starts
    # every few minutes: a segment per start would be hundreds a day, each read at every
    # start); after a torn record a new one starts, so it never runs into a good record.
    sp.tail_open = clean and bool(sp.segs) and sp.segs[-1][1] < sp.seg_bytes
