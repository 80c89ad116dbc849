"""The gateway's MQTT session: connect, subscribe, receive, and acknowledge by hand.

A persistent session (MQTT 5: session expiry; 3.1.1: clean session off after the first
connection) with manual acks: a message is acknowledged only when the batcher says its
points are stored. Packet ids belong to one connection, so each message's ack token carries
the connection's generation and an ack for an earlier connection is dropped (the broker
redelivers that message on the new one).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from urbanpulse.broker.credentials import apply_credentials
from urbanpulse.broker.policy import MAX_PACKET_BYTES
from urbanpulse.config import MqttSettings

from .batcher import AckToken
from .partition import TopicState

mqtt_log = logging.getLogger("urbanpulse.mqtt")

# (topic, payload, ack token or None for QoS 0)
MessageSink = Callable[[str, bytes, AckToken | None], None]


# Topics per SUBSCRIBE/UNSUBSCRIBE packet: a worker may hold thousands (service/partition.py)
# and a packet must stay under the broker's max_packet_size.
TOPICS_PER_PACKET = 500


class BrokerSession:
    def __init__(
        self,
        settings: MqttSettings,
        topics: list[str],
        on_message: MessageSink,
        on_ready: Callable[[], None],
        on_lost: Callable[[str], None],
        state: TopicState | None = None,
        on_state: Callable[[TopicState], None] | None = None,
    ) -> None:
        """``topics[0]`` is the one the service cannot do without: ready once it is granted
        (no topics: ready once connected). ``on_ready``/``on_lost`` run on paho's thread when
        the session is usable / is lost. ``state``: the topics the session may hold from
        before (service/partition.py), kept until release(); ``on_state`` is told each change,
        a topic held before it is subscribed, granted once the broker confirms it."""
        self._settings = settings
        self.topics = list(topics)
        self._state = state or TopicState(set(), set())
        self._on_state = on_state
        self._subscribe_mids: dict[int, list[str]] = {}
        self._unsubscribe_mids: dict[int, list[str]] = {}
        self._first_mid: int | None = None
        self._topics_lock = threading.Lock()
        self._on_message_sink = on_message
        self._on_ready = on_ready
        self._on_lost = on_lost
        self.connected = threading.Event()
        # Set once the service is stopping: a disconnect then is expected, not reported.
        self.stopping = False
        self._generation = 0
        self._ack_lock = threading.Lock()
        self._client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        m = self._settings
        v5 = m.protocol == "5"
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=m.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else m.clean_start,
            manual_ack=True,
        )
        apply_credentials(client, m)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        return client

    def start(self) -> None:
        """Connect in the background; paho reconnects on its own after a loss."""
        m = self._settings
        properties = None
        if m.protocol == "5":
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 0 if m.clean_start else m.session_expiry_s
            properties.ReceiveMaximum = m.receive_maximum
            # The broker must not send us a larger packet (it drops it for this session), so
            # one board's huge retained status cannot bloat the gateway.
            properties.MaximumPacketSize = MAX_PACKET_BYTES
        self._client.connect_async(
            m.host,
            m.port,
            keepalive=m.keepalive_s,
            clean_start=m.clean_start if m.protocol == "5" else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
        )
        self._client.loop_start()

    def stop(self) -> None:
        self.stopping = True
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic: str, payload: bytes, retain: bool = True) -> bool:
        """Queue a QoS 1 message (the gateway's receipts); False if not connected."""
        if not self.connected.is_set():
            return False
        return self._client.publish(topic, payload, qos=1, retain=retain).rc == 0

    def ack(self, tokens: list[AckToken]) -> None:
        with self._ack_lock:
            for generation, mid, qos in tokens:
                if generation == self._generation:
                    self._client.ack(mid, qos)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            mqtt_log.error("broker refused the connection: %s", reason)
            return
        with self._ack_lock:
            self._generation += 1
        mqtt_log.info(
            "connected to %s:%d as %s session_present=%s",
            self._settings.host,
            self._settings.port,
            self._settings.client_id,
            flags.session_present,
        )
        # Subscribing again is harmless when the session kept the subscription.
        with self._topics_lock:
            self._subscribe(client, self.topics, first=True)
        if not self.topics:
            self._ready()
        elif flags.session_present:
            # The session holds the subscription already, and the broker sends its queued
            # messages before the SUBACK: with a big backlog that takes a long while, which
            # must not count as "not ready" (systemd would time out the start).
            self._ready()

    def set_topics(self, topics: list[str]) -> None:
        """Subscribe to what is new (at once if connected, else on the next connection);
        what is gone stays held until release()."""
        with self._topics_lock:
            old = set(self.topics)
            self.topics = list(topics)
            if self.connected.is_set():
                self._subscribe(self._client, [t for t in topics if t not in old], first=False)

    def stale(self) -> set[str]:
        """Topics the session may hold that are not its topics any more."""
        with self._topics_lock:
            return self._state.held - set(self.topics)

    def release(self, topics: set[str]) -> None:
        """Unsubscribe from these (not from its own topics); held until the broker confirms,
        and sent again on a later call if the connection was lost first."""
        with self._topics_lock:
            gone = sorted(topics - set(self.topics))
            for i in range(0, len(gone), TOPICS_PER_PACKET):
                chunk = gone[i:i + TOPICS_PER_PACKET]
                _, mid = self._client.unsubscribe(chunk)
                if mid is not None:
                    self._unsubscribe_mids[mid] = chunk

    def _subscribe(self, client: mqtt.Client, topics: list[str], first: bool) -> None:
        if not topics:
            return
        if not self._state.held.issuperset(topics):
            self._state.held |= set(topics)
            self._tell_state()
        for i in range(0, len(topics), TOPICS_PER_PACKET):
            chunk = topics[i:i + TOPICS_PER_PACKET]
            _, mid = client.subscribe([(topic, 1) for topic in chunk])
            if mid is None:
                return  # not connected any more: the next connection subscribes to all
            self._subscribe_mids[mid] = chunk
            if first and i == 0:
                self._first_mid = mid

    def _tell_state(self) -> None:
        if self._on_state is not None:
            self._on_state(TopicState(set(self._state.held), set(self._state.granted)))

    def _on_unsubscribe(self, client: mqtt.Client, userdata: Any, mid: int, *_: Any) -> None:
        with self._topics_lock:
            gone = set(self._unsubscribe_mids.pop(mid, [])) - set(self.topics)
            self._state.held -= gone
            self._state.granted -= gone
            self._tell_state()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        with self._topics_lock:
            chunk = self._subscribe_mids.pop(mid, [])
            granted = {t for t, rc in zip(chunk, reason_codes, strict=False) if not rc.is_failure}
            if not self._state.granted.issuperset(granted):
                self._state.granted |= granted
                self._tell_state()
        for topic, rc in zip(chunk, reason_codes, strict=False):
            if rc.is_failure:
                mqtt_log.error("broker refused the subscription to %s: %s", topic, rc)
        if mid != self._first_mid:
            return
        if not reason_codes or reason_codes[0].is_failure:
            return  # no telemetry: not ready (health and status alone are not the service)
        # Ready only now (on a new session): before the SUBACK it would miss messages. The
        # store was checked in start(), before the connection.
        self._ready()

    def _ready(self) -> None:
        if self.connected.is_set():
            return
        self.connected.set()
        self._on_ready()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connected.clear()
        if not self.stopping:
            mqtt_log.warning("disconnected from broker (%s), reconnecting", reason)
            self._on_lost(str(reason))

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        token: AckToken = (self._generation, msg.mid, msg.qos)
        self._on_message_sink(msg.topic, bytes(msg.payload), token if msg.qos > 0 else None)

