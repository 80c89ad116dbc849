# The flash spool (urbanpulse_fw/spool.py) and the outbox spilling into it, on real files.
import os

from mpytest import encode_sample, eq, rmtree, tmpdir
from urbanpulse_fw import spool, telemetry


def sample(t):
    return encode_sample(1763700000000 + t, [("pm25", float(t % 50))])


def drain(sp, n=7):
    out = []
    while sp.count:
        got = sp.read(n)
        if not got:
            break
        out.extend(got)
        sp.ack()
    return out


def test_records_come_back_oldest_first_and_survive_a_reload():
    d = tmpdir("spool")
    try:
        sp = spool.Spool(d + "/s", 8192)
        sp.append(sample, 0, 30)
        eq(sp.count, 30, "held")
        first = sp.read(10)
        eq(first, [sample(i) for i in range(10)], "oldest first")
        sp.ack()
        # A reboot: a new Spool on the same folder knows what is left and where it was.
        sp2 = spool.Spool(d + "/s", 8192)
        eq(sp2.count, 20, "held after reload")
        sp2.append(sample, 30, 35)
        eq(drain(sp2), [sample(i) for i in range(10, 35)], "the rest, in order, once")
        eq(sp2.count, 0, "empty")
        eq(spool.Spool(d + "/s", 8192).count, 0, "nothing comes back after all was acked")
    finally:
        rmtree(d)


def test_unacked_read_is_sent_again_after_a_reboot():
    d = tmpdir("spool")
    try:
        sp = spool.Spool(d + "/s", 8192)
        sp.append(sample, 0, 5)
        sp.read(3)  # published, but no PUBACK before the power went
        eq(drain(spool.Spool(d + "/s", 8192)), [sample(i) for i in range(5)], "at least once")
    finally:
        rmtree(d)


def test_power_cut_mid_write_loses_only_the_torn_record():
    d = tmpdir("spool")
    try:
        sp = spool.Spool(d + "/s", 8192)
        sp.append(sample, 0, 4)
        seg = d + "/s/" + str(sp.segs[-1][0])
        rec = sample(99)
        with open(seg, "ab") as f:
            f.write(rec[:len(rec) // 2])  # the power went here
        sp2 = spool.Spool(d + "/s", 8192)
        eq(sp2.count, 4, "the torn record is not counted as a sample")
        sp2.append(sample, 4, 6)  # appends start a new segment
        eq(drain(sp2), [sample(i) for i in range(6)], "every whole record, in order")
        eq(sp2.dropped, 1, "the torn record is counted as dropped")
        # A record whose bytes were damaged fails its CRC.
        sp2.append(sample, 7, 8)
        seg = d + "/s/" + str(sp2.segs[-1][0])
        with open(seg, "rb") as f:
            b = bytearray(f.read())
        b[8] ^= 1
        with open(seg, "wb") as f:
            f.write(b)
        eq(drain(spool.Spool(d + "/s", 8192)), [], "a corrupt record is never sent")
    finally:
        rmtree(d)


def test_full_spool_drops_oldest_and_counts():
    d = tmpdir("spool")
    try:
        sp = spool.Spool(d + "/s", 4096)  # segments of 1024 bytes
        n = 200
        sp.append(sample, 0, n)
        assert sp.nbytes <= 4096 + 1024, sp.nbytes
        eq(sp.count + sp.dropped, n, "every sample is either held or counted as dropped")
        assert sp.dropped > 0
        got = drain(sp)
        eq(got, [sample(i) for i in range(n - len(got), n)], "the newest are kept, in order")
        size = 0
        for name in os.listdir(d + "/s"):
            if name.isdigit():
                size += os.stat(d + "/s/" + name)[6]
        eq(size, 0, "sent segments are deleted from flash")
    finally:
        rmtree(d)


def test_outbox_spills_to_flash_and_sends_oldest_first():
    d = tmpdir("spool")
    try:
        ob = telemetry.Outbox(1, max_samples=5, max_bytes=1024)
        ob.spool = spool.Spool(d + "/s", 65536)
        ob.flash = 65536
        sent = []
        for i in range(40):  # an outage: far more than 1 KiB of RAM holds
            ob.add(sample(i))
        assert ob.spool.count > 0, "spilled"
        eq(ob.held(), 40, "nothing lost")
        eq(ob.lost(), 0, "nothing dropped")
        for i in range(40, 43):  # the broker is back; sampling goes on
            m = ob.take()
            sent.extend(bytes(m.part(k)) for k in range(m.count))
            ob.ack(m)
            ob.add(sample(i))
        while True:
            m = ob.take()
            if m is None:
                break
            sent.extend(bytes(m.part(k)) for k in range(m.count))
            ob.ack(m)
        eq(sent, [sample(i) for i in range(43)], "every sample once, oldest first")
        eq(ob.held(), 0, "all acknowledged")
        # A message from RAM in flight stays first when the rest spills meanwhile.
        ob.add(sample(50))
        m = ob.take()
        for i in range(51, 70):
            ob.add(sample(i))
        ob.spill()
        out = [bytes(m.part(k)) for k in range(m.count)]
        ob.ack(m)
        while True:
            m = ob.take()
            if m is None:
                break
            out.extend(bytes(m.part(k)) for k in range(m.count))
            ob.ack(m)
        eq(out, [sample(i) for i in range(50, 70)], "order kept around a spill")
    finally:
        rmtree(d)


def reload_drain(d):
    return drain(spool.Spool(d + "/s", 65536))


def test_clean_stop_keeps_the_message_in_flight_in_flash_oldest_first():
    # Broker gone with a message in flight (no PUBACK), then a clean stop: its samples are the
    # oldest and only in RAM; they must reach flash before the rest, and nothing twice.
    d = tmpdir("spool")
    try:
        ob = telemetry.Outbox(1, max_samples=5, max_bytes=1024)
        ob.spool = spool.Spool(d + "/s", 65536)
        ob.flash = 65536
        for i in range(3):
            ob.add(sample(i))
        ob.take()  # published, never acknowledged
        for i in range(3, 40):  # RAM fills meanwhile: the unsent samples spill
            ob.add(sample(i))
        assert ob.spool.count > 0, "spilled while the message was in flight"
        eq(ob.spool.segs[0][0], 1, "the spool's oldest segment is number 1")
        ob.spill(True)
        eq(ob.held(), 40, "held: all in flash")
        eq(ob.count, 0, "RAM empty")
        eq(ob.msg, None, "the message is forgotten: a late PUBACK changes nothing")
        eq(reload_drain(d), [sample(i) for i in range(40)], "after the start: all, in order")
        # Without anything in flash yet: the message in flight, then the rest.
        ob = telemetry.Outbox(1, max_samples=5, max_bytes=1024)
        ob.spool = spool.Spool(d + "/s", 65536)
        ob.flash = 65536
        for i in range(8):
            ob.add(sample(i))
        ob.take()
        ob.spill(True)
        eq(reload_drain(d), [sample(i) for i in range(8)], "in flight first, once")
    finally:
        rmtree(d)


def test_clean_stop_with_a_spooled_message_in_flight_sends_it_again():
    d = tmpdir("spool")
    try:
        ob = telemetry.Outbox(1, max_samples=5, max_bytes=1024)
        ob.spool = spool.Spool(d + "/s", 65536)
        ob.flash = 65536
        for i in range(40):
            ob.add(sample(i))
        m = ob.take()
        assert m.spooled is not None, "read from flash"
        ob.spill(True)
        eq(ob.held(), 40, "nothing lost")
        eq(reload_drain(d), [sample(i) for i in range(40)], "sent again after the start, in order")
    finally:
        rmtree(d)
