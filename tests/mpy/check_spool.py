# The flash spool (urbanpulse_fw/spool.py) and the outbox spilling into it, on real files.
import os

from mpytest import encode_sample, eq, rmtree, tmpdir
from urbanpulse_fw import spool, telemetry


def sample(t):
    return encode_sample(1763700000000 + t, [("pm25", float(t % 50))])


def read(sp, n, size=1024):
    # What Outbox.take() does: records read into a buffer, their CRC suffix cut.
    mv = memoryview(bytearray(size))
    offs = [0] * (n + 1)
    k = sp.read(mv, offs, n)
    return [bytes(mv[offs[i]:offs[i + 1] - 10]) for i in range(k)]


def drain(sp, n=7, size=1024):
    out = []
    while sp.count:
        got = read(sp, n, size)
        if not got:
            break
        out.extend(got)
        sp.ack()
    return out


def flash_outbox(d, ram, flash):
    ob = telemetry.Outbox(1, max_samples=5, max_bytes=ram)
    ob.spool = spool.Spool(d + "/s", flash)
    ob.flash = flash
    return ob


def test_records_come_back_oldest_first_and_survive_a_reload():
    d = tmpdir("spool")
    try:
        sp = spool.Spool(d + "/s", 8192)
        sp.append(sample, 0, 30)
        eq(sp.count, 30, "held")
        first = read(sp, 10)
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


def test_a_start_goes_on_in_the_last_whole_segment():
    # A deep-sleep board starts every few minutes: a segment per start would be hundreds a
    # day, all read at every start.
    d = tmpdir("spool")
    try:
        for i in range(20):  # 20 wakes, one sample each
            spool.Spool(d + "/s", 65536).append(sample, i, i + 1)
        sp = spool.Spool(d + "/s", 65536)
        eq(len(sp.segs), 1, "one segment for 20 starts")
        eq(drain(sp), [sample(i) for i in range(20)], "every sample, in order")
    finally:
        rmtree(d)


def test_unacked_read_is_sent_again_after_a_reboot():
    d = tmpdir("spool")
    try:
        sp = spool.Spool(d + "/s", 8192)
        sp.append(sample, 0, 5)
        read(sp, 3)  # published, but no PUBACK before the power went
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
        ob = flash_outbox(d, 1024, 65536)
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
        ob = flash_outbox(d, 1024, 65536)
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
        ob = flash_outbox(d, 1024, 65536)
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
        ob = flash_outbox(d, 1024, 65536)
        for i in range(40):
            ob.add(sample(i))
        m = ob.take()
        assert m.spooled, "read from flash"
        ob.spill(True)
        eq(ob.held(), 40, "nothing lost")
        eq(reload_drain(d), [sample(i) for i in range(40)], "sent again after the start, in order")
    finally:
        rmtree(d)


def test_records_read_through_a_small_buffer_and_an_overlong_line_is_skipped():
    d = tmpdir("spool")
    try:
        sp = spool.Spool(d + "/s", 65536)
        sp.append(sample, 0, 3)
        big = b'{"t":1,"x":"' + b"y" * 200 + b'"}'
        sp.append(lambda i: big, 0, 1)  # longer than the buffer
        sp.append(sample, 3, 6)
        n = len(sample(0)) + 10
        # Room for one record and a bit: one per read, each whole.
        eq(drain(sp, 7, n + 5), [sample(i) for i in range(6)], "all but the overlong one")
        eq(sp.dropped, 1, "the record that could not be read is counted")
    finally:
        rmtree(d)


def test_buffered_count_stays_right_when_a_full_spool_drops_the_message_in_flight():
    d = tmpdir("spool")
    try:
        ob = flash_outbox(d, 512, 4096)  # segments of 1024 bytes
        for i in range(30):
            ob.add(sample(i))
        m = ob.take()
        assert m.spooled, "read from flash"
        eq(ob.held() + ob.lost(), 30, "held or dropped before")
        for i in range(30, 200):  # the outage goes on: the full spool drops its oldest
            ob.add(sample(i))
        assert ob.spool.dropped > 0, "the spool overflowed"
        eq(ob.held() + ob.lost(), 200, "every sample held or counted as dropped")
        first = [bytes(m.part(k)) for k in range(m.count)]
        eq(first, [sample(i) for i in range(m.count)], "the message in flight is intact")
        ob.ack(m)
        eq(ob.held() + ob.lost(), 200 - m.count, "after its ack")
    finally:
        rmtree(d)

