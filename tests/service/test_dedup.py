"""The memory of recent messages that recognises redeliveries."""

from __future__ import annotations

import pytest

from urbanpulse.service.dedup import RecentMessages


def test_a_message_is_new_once_then_a_duplicate() -> None:
    recent = RecentMessages(10)
    assert not recent.seen_before("air-north-01", 7, 1042)
    assert recent.seen_before("air-north-01", 7, 1042)
    # Any part of the name differs: another message.
    assert not recent.seen_before("air-north-02", 7, 1042)
    assert not recent.seen_before("air-north-01", 8, 1042)
    assert not recent.seen_before("air-north-01", 7, 1043)


def test_memory_is_bounded_and_forgets_the_least_recently_seen() -> None:
    recent = RecentMessages(3)
    for seq in range(3):
        recent.seen_before("noise-centre-01", 1, seq)
    assert recent.seen_before("noise-centre-01", 1, 0)  # seen again: now the most recent
    recent.seen_before("noise-centre-01", 1, 3)  # pushes out seq 1, the least recent
    assert len(recent) == 3
    assert recent.seen_before("noise-centre-01", 1, 0)
    assert not recent.seen_before("noise-centre-01", 1, 1)


def test_counters_outside_the_contract_are_refused() -> None:
    with pytest.raises(ValueError, match="boot=4294967296"):
        RecentMessages().seen_before("air-north-01", 2**32, 0)


def test_same_id_with_other_content_is_a_new_message_not_a_duplicate() -> None:
    # A board whose flash was erased counts from boot 1 again: its readings are new.
    recent = RecentMessages(10)
    assert not recent.seen_before("water-river-01", 1, 0, fingerprint=111)
    assert recent.seen_before("water-river-01", 1, 0, fingerprint=111)  # a redelivery
    assert not recent.seen_before("water-river-01", 1, 0, fingerprint=222)
    assert recent.reused == 1
    # The newer content is now the one a redelivery must match.
    assert recent.seen_before("water-river-01", 1, 0, fingerprint=222)
    assert not recent.seen_before("water-river-01", 1, 0, fingerprint=111)
