# At a clean stop: the samples of the telemetry message in flight (never acknowledged) go to
# the flash spool before everything it holds, as they are older. A module loaded for that
# moment only (its code would otherwise take heap for good).
import os

from urbanpulse_fw.spool import crc, replace


def prepend(sp, part, i, end):
    """Write part(i) .. part(end - 1) as the spool's oldest records."""
    segs = sp.segs
    if not segs or sp.pos or sp.inflight is not None:
        # Empty (order is kept anyway), or part of the oldest segment is acknowledged ("pos"
        # can name one segment only): appended, nothing lost, order not kept.
        sp.append(part, i, end)
        return
    # A segment of their own numbered before the oldest (the others move up one if need be).
    if segs[0][0] <= 1:
        for j in range(len(segs) - 1, -1, -1):
            os.rename(sp._file(segs[j][0]), sp._file(segs[j][0] + 1))
            segs[j][0] += 1
    seg = [segs[0][0] - 1, 0, 0]
    with open(sp._file(seg[0]), "wb") as f:
        while i < end:
            s = part(i)
            i += 1
            f.write(s)
            f.write(b"*" + crc(s) + b"\n")
            seg[1] += len(s) + 10
            seg[2] += 1
    segs.insert(0, seg)
    sp.count += seg[2]
    sp.nbytes += seg[1]
    replace(sp.path + "/pos", "%d 0\n" % seg[0])
