"""A reply longer than one message, sent piece by piece through a real gateway (loopback
adapter at max_length=40, scripted agent, real store file, manual clock): a retry sends only
the pieces the user has not got, and a piece whose outcome is unknown is never resent."""

from __future__ import annotations

from pathlib import Path

from gateway_core.adapters.base import Capabilities
from gateway_core.adapters.loopback import LoopbackAdapter
from gateway_core.clock import ManualClock
from gateway_core.control import Control
from gateway_core.delivery import split_text
from gateway_core.events import DeliveryFailed, ReplySent
from gateway_core.model import OutboxStatus, PieceStatus
from tests.support.harness import Running, next_event, start_gateway

LIMIT = 40
# Eight lines of 19 characters: the reply "You said: ..." splits into several 40-char pieces.
LONG = "\n".join(f"line {i} of the text" for i in range(8))
REPLY = f"You said: {LONG}"


async def start(tmp_path: Path, clock: ManualClock) -> Running:
    adapter = LoopbackAdapter(capabilities=Capabilities(max_length=LIMIT))
    return await start_gateway(tmp_path / "state", clock, adapter, notifier={"interval": 0})


async def pump(running: Running, clock: ManualClock, count: int, step: float = 2.0) -> None:
    """Move the clock (backoff waits) until the chat shows `count` messages (bounded)."""
    for _ in range(50):
        try:
            await running.adapter.wait_until(lambda: len(running.adapter.messages) >= count, 0.1)
            return
        except TimeoutError:
            clock.advance(step)
    raise AssertionError(f"the chat shows {[m.text for m in running.adapter.messages]}")


async def test_a_502_on_the_second_piece_resends_only_what_is_missing(
    tmp_path: Path, clock: ManualClock
) -> None:
    expected = split_text(REPLY, LIMIT)
    assert len(expected) >= 4
    running = await start(tmp_path, clock)
    sent = running.gateway.events.subscribe()
    running.adapter.fail_next(1, after=1, reason="HTTP 502 Bad Gateway")
    await running.adapter.user("ada").say(LONG)
    await pump(running, clock, len(expected))
    await next_event(sent, ReplySent)  # the last piece's confirmation is committed
    for _ in range(5):
        clock.advance(30)  # any further retry would have happened by now
    assert [m.text for m in running.adapter.messages] == expected  # each piece once, in order

    store = running.gateway.store
    (reply,) = await store.outbox.by_status(OutboxStatus.SENT)
    assert reply.attempts == 2
    pieces = await store.outbox.pieces(reply.id)
    assert [p.content for p in pieces] == expected
    assert all(p.status is PieceStatus.SENT for p in pieces)
    ids = [m.message_id for m in running.adapter.messages]
    assert [p.platform_message_id for p in pieces] == ids
    assert reply.platform_message_id == ids[-1]


async def test_a_piece_whose_outcome_is_unknown_is_not_resent_nor_are_the_later_pieces(
    tmp_path: Path, clock: ManualClock
) -> None:
    expected = split_text(REPLY, LIMIT)
    running = await start(tmp_path, clock)
    running.adapter.fail_next(1, after=1, unknown=True, reason="timed out")
    failures = running.gateway.events.subscribe()
    ada = running.adapter.user("ada")
    await ada.say(LONG)
    failed = await next_event(failures, DeliveryFailed)
    assert failed.final
    for _ in range(10):
        clock.advance(30)
    await ada.say("and now?")  # later replies still go out
    await ada.wait_for(2)

    assert [m.text for m in ada.received()] == [expected[0], "You said: and now?"]
    store = running.gateway.store
    (unknown,) = await store.outbox.by_status(OutboxStatus.UNKNOWN)
    count = len(expected)
    assert unknown.last_error == f"piece 2 of {count} (pieces 3-{count} not sent yet): timed out"
    statuses = [p.status for p in await store.outbox.pieces(unknown.id)]
    assert statuses == [PieceStatus.SENT, PieceStatus.UNKNOWN] + [PieceStatus.PENDING] * (count - 2)


async def test_an_operator_resend_of_a_split_reply_sends_the_unknown_piece_and_the_rest(
    tmp_path: Path, clock: ManualClock
) -> None:
    expected = split_text(REPLY, LIMIT)
    running = await start(tmp_path, clock)
    running.adapter.fail_next(1, after=1, unknown=True, reason="timed out")
    failures = running.gateway.events.subscribe()
    await running.adapter.user("ada").say(LONG)
    await pump(running, clock, 1)
    store = running.gateway.store
    # Published once the unknown outcome is committed (not a count of polls of the store).
    failed = await next_event(failures, DeliveryFailed)
    assert failed.unknown
    unknown = await store.outbox.by_status(OutboxStatus.UNKNOWN)
    assert [m.text for m in running.adapter.messages] == expected[:1]
    # The operator checked the chat: piece 2 never arrived. One resend sends it and the rest.
    sent = running.gateway.events.subscribe()
    result = await Control(running.gateway).resend(unknown[0].id, actor="alice")
    assert result.ok, result.message
    await pump(running, clock, len(expected))
    await next_event(sent, ReplySent)  # the last piece's confirmation is committed
    assert [m.text for m in running.adapter.messages] == expected  # piece 1 not sent again
    pieces = await store.outbox.pieces(unknown[0].id)
    assert all(p.status is PieceStatus.SENT for p in pieces)
