"""Searching stored sessions (the console's sessions tab and its filter read these)."""

from __future__ import annotations

import pytest

from gateway_core.clock import ManualClock
from gateway_core.model import Origin, Session, SessionKey
from gateway_core.store import Store

pytestmark = pytest.mark.both_backends


async def test_search_matches_key_and_user_name_and_escapes_wildcards(
    store: Store, clock: ManualClock
) -> None:
    for chat, name in (("ada", "Ada"), ("b_b", "Bob"), ("zoe", "Zoë"), ("pct", "100%")):
        clock.advance(1)
        await store.sessions.ensure(
            SessionKey("loopback", chat), Origin("loopback", chat, user_name=name)
        )

    def chats(found: list[Session]) -> list[str]:
        return [s.key.chat_id for s in found]

    assert chats(await store.sessions.search("", "id", None)) == ["ada", "b_b", "zoe", "pct"]
    assert chats(await store.sessions.search("", "recent", 2)) == ["pct", "zoe"]
    assert chats(await store.sessions.search("ADA", "id", None)) == ["ada"]
    assert chats(await store.sessions.search("zoë", "id", None)) == ["zoe"]
    assert chats(await store.sessions.search("_", "id", None)) == ["b_b"]  # not a wildcard
    assert chats(await store.sessions.search("0%", "id", None)) == ["pct"]
    assert (await store.sessions.count_matching("zo"), await store.sessions.count_matching("")) == (
        1,
        4,
    )
