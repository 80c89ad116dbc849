# The MQTT client against a real Mosquitto: the pytest driver starts one and passes its port
# in URBANPULSE_TEST_MQTT_PORT (by hand: mosquitto -p 18999 & and export the variable).
import os
import time

from mpytest import eq, raises
from urbanpulse_fw import mqtt


def port():
    p = os.getenv("URBANPULSE_TEST_MQTT_PORT")
    if not p:
        raise AssertionError("set URBANPULSE_TEST_MQTT_PORT to the port of a running broker")
    return int(p)


def unique(name):
    return "%s-%d" % (name, int.from_bytes(os.urandom(3), "little"))


def client(name, **kwargs):
    c = mqtt.Client(unique(name), "127.0.0.1", port(), **kwargs)
    c.got = []
    c.on_message = lambda topic, payload, retain: c.got.append((topic, payload, retain))
    return c


def poll_until(clients, cond, timeout_ms=5000):
    deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
    while not cond():
        if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
            raise AssertionError("timed out")
        for c in clients:
            c.poll(20)


def subscribed(c, topic, qos=1):
    acks = []
    c.on_suback = lambda pid, granted: acks.append(granted)
    c.subscribe(topic, qos)
    poll_until([c], lambda: acks)
    eq(acks[0], bytes([qos]), "granted QoS")


def test_publish_qos0_and_qos1_round_trip():
    base = unique("test/rt")
    c = client("rt")
    c.connect()
    subscribed(c, base + "/#")
    eq(c.publish(base + "/a", b"zero"), 0, "QoS 0 has no id")
    pid = c.publish(base + "/b", [b"o", b"ne"], qos=1)
    assert pid > 0
    poll_until([c], lambda: len(c.got) == 2 and not c.inflight())
    eq(sorted(c.got), [(base + "/a", b"zero", False), (base + "/b", b"one", False)], "received")
    c.disconnect()


def test_puback_callback_for_each_message():
    c = client("ack")
    acked = []
    c.on_puback = acked.append
    c.connect()
    topic = unique("test/ack")
    pids = [c.publish(topic, b"%d" % i, qos=1) for i in range(20)]
    poll_until([c], lambda: len(acked) == 20)
    eq(sorted(acked), sorted(pids), "every packet id acknowledged once")
    eq(c.inflight(), [], "nothing left in flight")
    c.disconnect()


def test_will_is_retained_when_the_link_dies():
    status = unique("test/will") + "/status"
    w = client("will")
    w.set_last_will(status, b'{"state":"offline"}', retain=True, qos=1)
    w.connect()
    w.publish(status, b'{"state":"online"}', qos=1, retain=True)
    poll_until([w], lambda: not w.inflight())
    w.sock.close()  # no DISCONNECT: the broker must publish the will
    w.sock = None
    w.connected = False
    time.sleep_ms(300)
    obs = client("obs")
    obs.connect()
    subscribed(obs, status)
    poll_until([obs], lambda: obs.got)
    eq(obs.got[0], (status, b'{"state":"offline"}', True), "retained will")
    obs.publish(status, b"", qos=1, retain=True)  # clear the retained message
    poll_until([obs], lambda: not obs.inflight())
    obs.disconnect()


def test_clean_disconnect_drops_the_will():
    status = unique("test/bye") + "/status"
    w = client("bye")
    w.set_last_will(status, b'{"state":"offline"}', retain=True, qos=1)
    w.connect()
    w.publish(status, b'{"state":"online"}', qos=1, retain=True)
    poll_until([w], lambda: not w.inflight())
    w.disconnect()
    time.sleep_ms(300)
    obs = client("obs")
    obs.connect()
    subscribed(obs, status)
    poll_until([obs], lambda: obs.got)
    eq(obs.got, [(status, b'{"state":"online"}', True)], "no will after DISCONNECT")
    obs.publish(status, b"", qos=1, retain=True)
    poll_until([obs], lambda: not obs.inflight())
    obs.disconnect()


def test_keepalive_keeps_an_idle_connection():
    # keepalive 1 s: the broker drops us after 1.5 s unless the pings work.
    c = client("ka", keepalive=1)
    c.connect()
    deadline = time.ticks_add(time.ticks_ms(), 3500)
    while time.ticks_diff(deadline, time.ticks_ms()) > 0:
        c.poll(50)
    assert c.connected
    topic = unique("test/ka")
    c.publish(topic, b"still here", qos=1)
    poll_until([c], lambda: not c.inflight())
    c.disconnect()


def test_payload_over_64k_round_trip():
    topic = unique("test/big")
    c = client("big", max_packet=200000)
    c.connect()
    subscribed(c, topic)
    payload = bytes(range(256)) * 300  # 76800 bytes: 3-byte remaining length
    c.publish(topic, payload, qos=1)
    poll_until([c], lambda: c.got and not c.inflight(), 10000)
    eq(len(c.got[0][1]), len(payload), "length")
    assert c.got[0][1] == payload, "content"
    c.disconnect()


def test_oversized_incoming_message_skipped_not_fatal():
    topic = unique("test/skip")
    c = client("skip", max_packet=1000)
    c.connect()
    subscribed(c, topic + "/#")
    c.publish(topic + "/big", b"x" * 5000, qos=1)
    c.publish(topic + "/small", b"ok", qos=1)
    poll_until([c], lambda: c.got and not c.inflight())
    eq(c.got, [(topic + "/small", b"ok", False)], "big skipped, small delivered")
    assert c.connected
    c.disconnect()


def test_unreachable_broker_is_an_error():
    c = mqtt.Client("nobody", "127.0.0.1", 1, timeout_ms=2000)
    e = raises(mqtt.MQTTError, c.connect)
    # The cause; the caller, which knows where it tried, names the broker (uplink.py).
    assert isinstance(e.args[0], OSError) and "ECONNREFUSED" in str(e), str(e)
    assert not c.connected
    raises(mqtt.ConnectionLost, c.poll, 0)


def test_reconnect_resends_unacked_with_same_payload():
    topic = unique("test/re")
    obs = client("obs")
    obs.connect()
    subscribed(obs, topic)
    c = client("re")
    c.connect()
    c.sock.close()  # the link dies before the publish goes out
    pid = c.publish(topic, b"seq 0", qos=1)
    eq(c.inflight(), [pid], "kept for later")
    assert not c.connected
    c.connect()
    poll_until([c, obs], lambda: obs.got and not c.inflight())
    eq(obs.got[0][1], b"seq 0", "delivered after reconnect")
    c.disconnect()
    obs.disconnect()


def test_uplink_tries_the_backup_broker_and_resolves_each_host_once():
    # The first broker refuses (nothing listens on 127.0.0.9): the next one is tried at once.
    # An address is resolved once (getaddrinfo blocks the main loop) and again only after a
    # failure; the board stays with the broker that answered.
    from urbanpulse_fw import uplink

    calls = []
    real = mqtt.resolve

    def counting(host, p):
        calls.append(host)
        return real(host, p)

    mqtt.resolve = counting
    try:
        device = unique("bk")
        cfg = {"device_id": device, "mqtt_hosts": ["127.0.0.9", "127.0.0.1"],
               "mqtt_port": port(), "mqtt_prefix": "test", "mqtt_username": None,
               "mqtt_password": None, "mqtt_keepalive_s": 30, "mqtt_tls": None}
        logs = []
        up = uplink.Uplink(cfg, 1, lambda *parts: logs.append("".join(str(x) for x in parts)))
        up.stats = lambda: ""
        up.connect()
        eq(up.client.connected, False, "the first broker refused")
        assert "mqtt connect to 127.0.0.9:" in logs[0] and "retry in 100 ms" in logs[0], logs
        up.connect()
        eq(up.client.connected, True, "the backup answered")
        up.client.disconnect()
        up.connect()
        eq(up.client.connected, True, "again, to the one that answered")
        eq(calls, ["127.0.0.9", "127.0.0.1"], "each address resolved once")
        up.client.publish("test/%s/status" % device, b"", 1, True)  # no retained leftovers
        poll_until([up.client], lambda: not up.client.inflight())
        up.client.disconnect()
    finally:
        mqtt.resolve = real
