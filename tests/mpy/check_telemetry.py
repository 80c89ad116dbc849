# Telemetry message shape (CONTRACT.md v1) and the outbox's seq/boot/buffer rules.
import json

from mpytest import encode_sample, eq, payload, raises
from urbanpulse_fw import telemetry

T0 = 1763700000123


def sample(i, size=0):
    fields = [("pm25", 10.0 + i)]
    if size:
        fields.append(("pm10", 1.0 * size))
    return encode_sample(T0 + i, fields)


def test_encode_sample_is_compact_json():
    s = encode_sample(T0, [("pm25", 12.4), ("occupied", True), ("lamp_on", False),
                                     ("vehicles", 7), ("temperature", -3.25)])
    eq(s, b'{"t":1763700000123,"pm25":12.4,"occupied":true,"lamp_on":false,"vehicles":7,'
       b'"temperature":-3.25}', "encoding")
    eq(json.loads(s)["t"], T0, "t is an integer of milliseconds")


def test_encode_sample_drops_non_finite_and_none():
    s = encode_sample(T0, [("a", float("nan")), ("b", float("inf")),
                                     ("c", float("-inf")), ("d", None), ("e", 1.5)])
    eq(json.loads(s), {"t": T0, "e": 1.5}, "only finite numbers and bools")


def test_floats_stay_floats_and_short():
    eq(telemetry.format_float(round(8.2, 1)), "8.2", "no 8.199999999999999")
    eq(telemetry.format_float(100.0), "100.0", "keeps one decimal")
    eq(telemetry.format_float(-0.00001), "0.0", "no -0.0")
    eq(telemetry.format_float(630123.45), "630123.45", "meter reading")


def ts(ob):
    """The t offsets of all samples the outbox holds, oldest first."""
    return [json.loads(bytes(ob.part(i)))["t"] - T0 for i in range(ob.count)]


def test_message_shape_and_order():
    ob = telemetry.Outbox(7, max_samples=3)
    for i in range(5):
        ob.add(sample(i))
    m = ob.take()
    doc = json.loads(payload(m))
    eq(sorted(doc.keys()), ["boot", "samples", "seq", "v"], "keys")
    eq((doc["v"], doc["boot"], doc["seq"]), (1, 7, 0), "v, boot, first seq")
    eq([s["t"] for s in doc["samples"]], [T0, T0 + 1, T0 + 2], "oldest first, max 3")
    eq(m.size, len(payload(m)), "size announced to MQTT = bytes streamed")
    eq(ob.pending(), 2, "two wait")


def test_single_sample_message():
    ob = telemetry.Outbox(1)
    ob.add(sample(0))
    m = ob.take()
    eq(json.loads(payload(m))["samples"], [{"t": T0, "pm25": 10.0}], "one sample")
    eq(m.size, len(payload(m)), "size")


def test_seq_counts_messages_from_zero_per_boot():
    ob = telemetry.Outbox(3, max_samples=2)
    seqs = []
    for i in range(7):
        ob.add(sample(i))
    while ob.count:
        m = ob.take()
        seqs.append(m.seq)
        ob.ack(m)
    eq(seqs, [0, 1, 2, 3], "0.. within a boot")
    eq(telemetry.Outbox(4).next_seq, 0, "a new boot starts at 0 again")


def test_take_when_empty_full_or_busy():
    ob = telemetry.Outbox(1, max_samples=2)
    eq(ob.take(), None, "nothing to send")
    ob.add(sample(0))
    assert not ob.full()
    ob.add(sample(1))
    assert ob.full()
    m = ob.take()
    ob.add(sample(2))
    eq(ob.take(), None, "one message in flight at a time")
    ob.ack(m)
    eq(ob.take().seq, 1, "then the next")


def test_retry_keeps_seq_and_samples():
    ob = telemetry.Outbox(1, max_samples=4)
    for i in range(3):
        ob.add(sample(i))
    m = ob.take()
    m.pid = 42
    first = payload(m)
    for i in range(3, 10):
        ob.add(sample(i))  # more samples arrive while the message waits for its PUBACK
    eq(payload(m), first, "same bytes when sent again")
    eq(ob.msg, m, "still in flight")
    ob.ack(m)
    eq(ob.msg, None, "acknowledged")
    eq(ts(ob), list(range(3, 10)), "the rest waits, in order")
    eq(ob.take().seq, 1, "next message, next seq")


def test_budget_drops_oldest_unsent_never_inflight():
    one = len(sample(0)) + telemetry.SAMPLE_OVERHEAD
    ob = telemetry.Outbox(1, max_samples=2, max_bytes=one * 5)
    ob.add(sample(0))
    ob.add(sample(1))
    m = ob.take()
    before = payload(m)
    for i in range(2, 12):
        ob.add(sample(i))
    eq(ob.count, 5, "budget holds five samples")
    eq(ts(ob), [0, 1, 9, 10, 11], "message in flight kept, newest unsent kept")
    eq(payload(m), before, "message in flight untouched")
    eq(ob.dropped, 7, "dropped count")
    ob.ack(m)
    eq(ob.nbytes, one * 3, "accounting back to the pending samples")
    eq(ts(ob), [9, 10, 11], "pending after the ack")


def test_ring_wraps_around_many_times():
    ob = telemetry.Outbox(1, max_samples=4, max_bytes=2000)
    got = []
    for i in range(500):
        ob.add(sample(i))
        if i % 4 == 3:
            m = ob.take()
            got.extend(json.loads(s)["t"] - T0 for s in [bytes(ob.part(k)) for k in range(m.count)])
            eq(m.size, len(payload(m)), "size")
            ob.ack(m)
    eq(ob.dropped, 0, "enough room")
    eq(got, list(range(len(got))), "every sample once, in order")
    assert len(got) > 300


def test_budget_always_keeps_newest_sample():
    ob = telemetry.Outbox(1, max_samples=2, max_bytes=10)
    ob.add(sample(0))
    ob.add(sample(1))
    eq(ts(ob), [1], "one sample even over budget")


def test_max_samples_limits():
    raises(ValueError, telemetry.Outbox, 1, 0)
    raises(ValueError, telemetry.Outbox, 1, 101)
    ob = telemetry.Outbox(1, max_samples=100, max_bytes=1 << 20)
    for i in range(150):
        ob.add(encode_sample(T0 + i, [("pm1", 1.5), ("pm25", 2.5), ("pm10", 3.5),
                                                ("temperature", -12.5), ("humidity", 99.5),
                                                ("pressure", 1013.25)]))
    m = ob.take()
    doc = json.loads(payload(m))
    eq(len(doc["samples"]), 100, "at most 100 samples")
    assert m.size < 64 * 1024, "a full message stays under 64 KiB"
    eq(ob.pending(), 50, "the rest waits")


def test_ack_with_no_heap_left_still_moves_every_sample():
    # A board out of memory at the worst moment: the PUBACK comes, and the samples behind the
    # acknowledged message must move down whole (a move cut short once left a sample twice).
    import micropython

    ob = telemetry.Outbox(1, max_samples=3, max_bytes=4096)
    samples = [encode_sample(1763700000000 + i, [("laeq", 40.0 + i)]) for i in range(12)]
    for s in samples:
        ob.add(s)
    m = ob.take()
    micropython.heap_lock()  # every allocation fails from here
    try:
        ob.ack(m)
    finally:
        micropython.heap_unlock()
    eq([bytes(ob.part(i)) for i in range(ob.count)], samples[3:], "the rest, each once, whole")
