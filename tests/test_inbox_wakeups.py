"""What a node's inbox notifications name: the items to read, or "look at everything"."""

from __future__ import annotations

from gateway_core.store.inbox_wakeups import PAYLOAD_LIMIT, InboxWakeups, payload_for


def test_the_items_named_since_the_last_look_are_taken_once() -> None:
    wakeups = InboxWakeups()
    wakeups.note(payload_for([1, 2]))
    wakeups.note(payload_for([3]))
    assert wakeups.event.is_set()
    assert wakeups.take() == {1, 2, 3}
    assert not wakeups.event.is_set()
    assert wakeups.take() == set()


def test_a_batch_too_big_to_name_or_an_unreadable_payload_asks_for_a_full_look() -> None:
    many = list(range(100_000, 100_000 + PAYLOAD_LIMIT))
    assert payload_for(many) == ""
    wakeups = InboxWakeups()
    wakeups.note(payload_for([1]))
    wakeups.note(payload_for(many))
    assert wakeups.take() is None
    wakeups.note("1,x")
    assert wakeups.take() is None
    assert wakeups.take() == set()
