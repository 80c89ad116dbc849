"""The contract's topics (CONTRACT.md, "Topics"): ``{prefix}/{device_id}/{channel}``."""

from __future__ import annotations

# What a board publishes on, and what it is sent on.
BOARD_CHANNELS = ("telemetry", "health", "status", "cmd/ack")
COMMAND_CHANNEL = "cmd"


def topic_levels(topic: str, prefix: str) -> list[str]:
    """The topic's levels after ``prefix/``; [] when the prefix does not match."""
    head = prefix + "/"
    return topic[len(head) :].split("/") if topic.startswith(head) else []


def topic_channel(topic: str, prefix: str) -> str | None:
    """``telemetry``, ``health``, ``status``, ``cmd/ack`` ... for
    ``{prefix}/{id}/{channel}``, else None."""
    levels = topic_levels(topic, prefix)
    if len(levels) < 2 or not levels[0]:
        return None
    channel = "/".join(levels[1:])
    return channel if len(levels) == 2 or channel == "cmd/ack" else None
