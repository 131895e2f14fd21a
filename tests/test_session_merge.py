"""merge_sessions: the store's first rows and this run's lanes give the same sessions, in the
same order, as sorting every session would (checked against that, on seeded random data)."""

from __future__ import annotations

import random

import pytest

from gateway_core.model import Origin, Session, SessionKey
from gateway_core.snapshot import (
    SessionActivity,
    SessionQuery,
    SessionView,
    merge_sessions,
    select_sessions,
    stored_session_view,
)

IDLE, RUNNING = SessionActivity.IDLE, SessionActivity.RUNNING
STATES = (IDLE, IDLE, IDLE, RUNNING, SessionActivity.QUEUED, SessionActivity.RESUMING)


def world(seed: int) -> tuple[list[Session], tuple[SessionView, ...]]:
    rng = random.Random(seed)
    sessions = []
    for n in range(1, 301):
        key = SessionKey("loopback", f"{rng.choice(['ada', 'bob', 'cy'])}-{n}")
        origin = Origin("loopback", key.chat_id, user_name=rng.choice(["Ann", "Ben", None]))
        at = 1_000.0 + rng.random() * 500
        sessions.append(Session(n, key, origin, 1, at, at))
    live = []
    for session in rng.sample(sessions, 120):  # lanes of this run: never older than stored
        view = stored_session_view(session)
        live.append(
            SessionView(
                **{
                    **{f: getattr(view, f) for f in view.__dataclass_fields__},
                    "state": rng.choice(STATES),
                    "last_activity": session.updated_at + rng.random() * 300,
                }
            )
        )
    return sessions, tuple(live)


def store_first(sessions: list[Session], query: SessionQuery) -> list[Session]:
    """What the store's search returns: filtered, ordered (recent or id), limited."""
    needle = query.text.lower()
    found = [
        s
        for s in sessions
        if needle in str(s.key).lower()
        or needle in ((s.origin and s.origin.user_name) or "").lower()
    ]
    if query.order == "recent":
        found.sort(key=lambda s: (-s.updated_at, s.id))
    else:
        found.sort(key=lambda s: s.id)
    return found if query.limit is None else found[: query.limit]


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("order", ["busy", "id", "recent"])
@pytest.mark.parametrize("text", ["", "bob", "ann"])
def test_merging_matches_sorting_everything(seed: int, order: str, text: str) -> None:
    sessions, live = world(seed)
    query = SessionQuery(order, text, 25)
    everything = {s.id: stored_session_view(s) for s in sessions}
    everything.update((v.session_id, v) for v in live)
    expected = select_sessions(tuple(everything.values()), query)
    assert merge_sessions(live, store_first(sessions, query), query) == expected
