"""Intake: inbound messages persisted, then handed to their sessions' lanes.

A batch from an adapter is committed to the inbox in ONE transaction before the adapter may
acknowledge it to its platform (persist, then confirm); a redelivered update is a no-op there
(the inbox is unique per platform id). Only then is each message submitted to its lane, or,
when it answers the agent's open question, handed to that question instead. At boot, what the
last run stored but never turned into a turn is submitted again, in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence

from gateway_core.adapters.base import InboundMessage
from gateway_core.delivery import Deliverer
from gateway_core.events import UpdatesStored
from gateway_core.lanes import LaneFull, Lanes
from gateway_core.model import InboxItem, InboxStatus, Session, SessionKey
from gateway_core.questions import Questions
from gateway_core.runtime import Runtime
from gateway_core.safe_json import parse_json
from gateway_core.store.codec import encode_text_payload
from gateway_core.store.inbox import finish_row, insert_row
from gateway_core.store.job import job
from gateway_core.store.leases import notify_nodes_row
from gateway_core.store.sessions import ensure_row
from gateway_core.store.transaction import Transaction
from gateway_core.turn import RequestKind, TurnRequest

log = logging.getLogger(__name__)


# A stored message's session as the intake's transaction returns it: (id, generation,
# created_at, updated_at). Not the Session itself: its key and origin are the message's, which
# the caller has, and this crosses from the store's writer process for every message.
SessionRow = tuple[int, int, float, float]


def _accepted(
    message: InboundMessage, inbox_id: int, row: SessionRow
) -> tuple[Session, int, InboundMessage]:
    assert message.origin is not None  # store_batch_body skips a message without one
    session_id, generation, created_at, updated_at = row
    origin = message.origin
    return (
        Session(session_id, origin.key, origin, generation, created_at, updated_at),
        inbox_id,
        message,
    )


def store_batch_body(
    db: Transaction, batch: Sequence[InboundMessage], now: float, *, notify_nodes: bool
) -> tuple[list[tuple[int, int, SessionRow]], int, int]:
    """The intake's transaction (a job: store/job.py): the inbox rows of a batch and their
    sessions' upserts. Returns (inbox id, index in the batch, session row) of each message
    that is new, and how many were skipped and how many were duplicates. notify_nodes: on a
    node, the sessions' owners may be other nodes, so the commit wakes them."""
    # Counted here and returned, not kept outside: a body may run twice (store/writer.py).
    skipped = duplicates = 0
    accepted = []
    for index, message in enumerate(batch):
        if message.skip_reason is not None or message.origin is None:
            # Recorded for dedup and for the operator; never becomes a turn.
            skip = insert_row(db, message.platform, message.update_id, None, "{}", now)
            if skip is not None:
                finish_row(db, skip, InboxStatus.SKIPPED, message.skip_reason, now)
                skipped += 1
            else:
                duplicates += 1
            continue
        key = message.origin.key
        payload = encode_text_payload(message.text)
        # The inbox row first: whether it is new decides whether the session's newest
        # message is this one, noted by the session's upsert (one statement).
        inbox_id = insert_row(
            db,
            message.platform,
            message.update_id,
            str(key),
            payload,
            now,
            message.message_id,
        )
        if inbox_id is not None:  # None: a redelivered update, already stored
            session = ensure_row(db, key, message.origin, now, message.message_id)
            row = (session.id, session.generation, session.created_at, session.updated_at)
            accepted.append((inbox_id, index, row))
        else:
            ensure_row(db, key, message.origin, now)
            duplicates += 1
    if accepted and notify_nodes:
        notify_nodes_row(db, [inbox_id for inbox_id, _, _ in accepted])
    return accepted, skipped, duplicates


class Intake:
    def __init__(
        self, runtime: Runtime, lanes: Lanes, questions: Questions, deliverer: Deliverer
    ) -> None:
        self._rt = runtime
        self._lanes = lanes
        self._questions = questions
        self._deliverer = deliverer
        self._tasks: set[asyncio.Future[None]] = set()
        # On a node: inbox items this run handed to lanes (the pickup skips them), and the
        # batches being accepted: committed perhaps, but their items not yet in `queued`.
        # A pickup waits for the batches under way when its read came back before it
        # compares, so it never takes an item of this node's own intake for one to queue.
        # (Not a lock around the accept: that would let one intake commit happen at a time,
        # every message paying a commit of its own.)
        self.queued: set[int] = set()
        self._accepting: set[asyncio.Future[None]] = set()
        self._picking = asyncio.Lock()

    async def accept(self, batch: Sequence[InboundMessage]) -> None:
        """Persist a batch in one transaction; only then may the adapter acknowledge it."""
        if self._rt.node is None:
            await self._accept(batch)
            return
        handed_over: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._accepting.add(handed_over)
        try:
            await self._accept(batch)
        finally:
            self._accepting.discard(handed_over)
            handed_over.set_result(None)

    async def _accept(self, batch: Sequence[InboundMessage]) -> None:
        rt = self._rt
        now = rt.clock.now()
        batch = list(batch)
        stored, skipped, duplicates = await rt.store.write(
            job(store_batch_body, batch, now, notify_nodes=rt.node is not None)
        )
        accepted = [_accepted(batch[index], inbox_id, row) for inbox_id, index, row in stored]
        refused = 0
        for session, inbox_id, message in accepted:
            if message.message_id is not None:
                self._deliverer.newest.saw(session.id, message.message_id)
            if self._questions.answer(session.id, message.text):
                # The answer to the agent's open question: the turn records it as the tool
                # result, so it does not start a turn of its own (nor may a pickup start one).
                if rt.node is not None:
                    self.queued.add(inbox_id)
                await rt.store.inbox.finish(inbox_id, InboxStatus.ANSWERED)
                continue
            if not self._submit(session, inbox_id, message.text, message.message_id):
                refused += 1
        if batch:
            rt.events.publish(
                UpdatesStored(
                    now, batch[0].platform, len(accepted) - refused, duplicates, skipped, refused
                )
            )

    async def queue_backlog(self) -> None:
        """At boot: messages the last run stored but never started a turn for (on a node,
        of the sessions it may own: the others are their owners' to run)."""
        node = self._rt.node
        if node is not None:
            await self.pick_up()
            return
        for inbound in await self._rt.store.inbox.open_items(limit=100_000):
            await self._queue_stored(inbound)

    async def pick_up(self, named: set[int] | None = None) -> int:
        """On a node: open inbox items of sessions this node may own, committed by any node
        and not yet queued here, handed to their lanes. `named`: only those items (what a
        wake-up named); None: every open item. Returns how many."""
        async with self._picking:
            return await self._pick_up(named)

    async def _pick_up(self, named: set[int] | None) -> int:
        node = self._rt.node
        assert node is not None
        if named is not None:
            await self._accepts_handed_over()
            named -= self.queued  # this node's own intake queued them already
            if not named:
                return 0
        queued_before = set(self.queued)
        found = await self._rt.store.inbox.open_for_node(node.id, named)
        # Batches whose commit the read saw have queued their items once they are handed over.
        await self._accepts_handed_over()
        if named is None:
            # Items queued before the read that it did not return have been turned into turns
            # (or their session went to another node): forget them.
            self.queued -= queued_before - {item.id for item, _ in found}
        picked = 0
        for item, session in found:
            if item.id not in self.queued:
                await self._queue_item(session, item)
                picked += 1
        return picked

    async def _accepts_handed_over(self) -> None:
        if self._accepting:
            await asyncio.wait(list(self._accepting))

    async def close(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _submit(self, session: Session, inbox_id: int, text: str, message_id: str | None) -> bool:
        """False when the session's queue is full (the message is refused, the user told)."""
        if self._rt.node is not None:
            self.queued.add(inbox_id)
        request = TurnRequest(RequestKind.MESSAGE, text, inbox_id, message_id=message_id)
        try:
            self._lanes.submit(session, request)
        except LaneFull:
            # Refused now, and the user is told so: running it at the next restart, perhaps
            # hours later and out of context, would be worse than asking them to resend.
            log.warning("session %s queue is full; message %s refused", session.id, inbox_id)
            self._background(self._refuse_overflow(session.id, inbox_id, message_id))
            return False
        return True

    async def _queue_stored(self, inbound: InboxItem) -> None:
        if inbound.session_key is None:
            return
        store = self._rt.store
        session = await store.sessions.by_key(SessionKey.parse(inbound.session_key))
        if session is None:
            await store.inbox.finish(inbound.id, InboxStatus.SKIPPED, "unreadable inbox item")
            return
        await self._queue_item(session, inbound)

    async def _queue_item(self, session: Session, inbound: InboxItem) -> None:
        decoded = parse_json(inbound.payload)
        text = decoded.get("text") if isinstance(decoded, dict) else None
        if not isinstance(text, str):
            await self._rt.store.inbox.finish(
                inbound.id, InboxStatus.SKIPPED, "unreadable inbox item"
            )
            return
        self._submit(session, inbound.id, text, inbound.message_id)

    async def _refuse_overflow(
        self, session_id: int, inbox_id: int, message_id: str | None
    ) -> None:
        limit = self._rt.config.lanes.max_queue
        await self._rt.store.inbox.finish(
            inbox_id, InboxStatus.REFUSED, f"more than {limit} messages queued"
        )
        await self._deliverer.post_notice(
            session_id,
            f"⚠️ {limit} messages are already waiting; this one was not processed. "
            "Please send it again once I have answered.",
            reply_to=message_id,  # which of their messages was not processed
        )

    def _background(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
