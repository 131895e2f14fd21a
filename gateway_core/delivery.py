"""Sending replies from the outbox, in order per session, never twice.

Each session has its own FIFO and worker, so replies arrive in the order they were produced
and one slow chat never holds up another. Every send is claimed durably first ("sending"),
so a crash mid-send is recorded as an unknown outcome rather than repeated (see
store/outbox.py for that policy).

A reply longer than the platform's limit is cut once, at its first claim, and sent piece by
piece: each piece's message id is committed before the next piece goes out, so a retry after
a 5xx or a restart during the backoff sends only the pieces the user has not got yet.

A reply is sent as a reply to the message it answers when the adapter's anchor mode says so
(anchors.py); of a split reply only the first piece is, so a retry that starts further on
sends the rest loose, as they would have been.

A turn's reply that can go out at once (its session has nothing queued, it fits in one
message, no stop has begun: `sends_at_once`) is claimed by the turn's own end transaction and
handed over claimed (`send_claimed`): its first attempt starts without a claim of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from gateway_core.adapters.base import Adapter, DeliveryError
from gateway_core.anchors import NewestMessages, anchor_for
from gateway_core.backoff import Backoff
from gateway_core.clock import wait_or_timeout
from gateway_core.events import DeliveryFailed, ReplySent
from gateway_core.model import ClaimedReply, Origin, OutboxItem
from gateway_core.runtime import GatewayState, Runtime
from gateway_core.store import LeaseLost

log = logging.getLogger(__name__)

# Retryable failures (429, 5xx, connection refused) back off with full jitter under ceilings
# of 2, 4, 8, 16, 30, 30... seconds (gateway_core/backoff.py), so the delivery workers of many
# sessions hit by one outage do not retry in lockstep: about five minutes of outage on
# average before a reply is given up as failed.
MAX_ATTEMPTS = 25


def split_text(text: str, limit: int) -> list[str]:
    """Pieces of at most `limit` characters, cut at line breaks where possible."""
    if limit <= 0 or len(text) <= limit:
        return [text]
    pieces: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = rest.rfind("\n", 0, limit + 1)
        if cut <= 0:
            cut = limit
        pieces.append(rest[:cut])
        rest = rest[cut:].lstrip("\n")
    if rest:
        pieces.append(rest)
    return pieces


@dataclass(slots=True)
class _SessionQueue:
    """A session's replies waiting to be sent, while it has any: its entry goes when its
    worker has sent everything, so sessions that spoke once cost nothing afterwards."""

    # Outbox ids, or a reply its turn's end already claimed (sent first, even by a stop).
    items: deque[int | ClaimedReply] = field(default_factory=deque)
    worker: asyncio.Task[None] | None = None
    # Where its replies go, known from the turn that produced them or read once per queue
    # (not cached per session for the whole run: that would be memory for every session
    # that ever spoke).
    origin: Origin | None = None
    # Between claiming a reply and recording how its attempt ended: a stop lets such an
    # attempt finish rather than cut it (a cut send is of unknown fate, never resent).
    sending: bool = False


# How long a stop waits for sends already under way (a platform's own timeout bounds each).
FINISH_SENDS_WITHIN = 5.0


class Deliverer:
    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._queues: dict[int, _SessionQueue] = {}
        self._backoff = Backoff(cap=30.0)
        self._closing = False  # no attempt starts once a stop began
        self._releasing: set[asyncio.Task[None]] = set()  # claims given back (send_claimed)
        self.unknown = 0  # deliveries of unknown outcome (count_unknown at boot)
        # Each session's newest user message (intake tells it), for reply anchors.
        self.newest = NewestMessages(runtime.store)

    async def post_notice(self, session_id: int, text: str, *, reply_to: str | None = None) -> int:
        """Tell a session's user something outside any turn (a refused message, a job's
        receipt). It goes through the outbox like a reply, so it is durable and sent once,
        and it is routed by the session's own stored origin (its chat and topic), never by
        whichever conversation happens to be in the foreground. reply_to: the platform id
        of the message it is about (it is sent as a reply to it)."""
        store = self._rt.store
        session = await store.sessions.get(session_id)
        if session is None:
            raise KeyError(f"no session {session_id}")
        outbox_id = await store.outbox.enqueue(
            session_id, session.generation, "notice", text, reply_to=reply_to
        )
        self.enqueue(session_id, outbox_id)
        return outbox_id

    async def count_unknown(self) -> int:
        """At boot: how many sends may or may not have reached their user (shown to the
        operator, who alone can tell and resend)."""
        self.unknown = await self._rt.store.outbox.count_unknown()
        return self.unknown

    async def resend(self, outbox_id: int) -> OutboxItem | None:
        """An operator's resend of a delivery of unknown outcome: queued again, once."""
        item = await self._rt.store.outbox.requeue_unknown(outbox_id)
        if item is not None:
            self.unknown = max(0, self.unknown - 1)
            self.enqueue(item.session_id, item.id)
        return item

    def enqueue(self, session_id: int, outbox_id: int, origin: Origin | None = None) -> None:
        """Queue a committed outbox item; origin: the session's, when the caller has it at
        hand (a turn's reply), which saves a read of the store."""
        queue = self._queues.get(session_id)
        if queue is None:  # not setdefault: that would build a queue per reply to throw away
            queue = self._queues[session_id] = _SessionQueue()
        if origin is not None:
            queue.origin = origin
        queue.items.append(outbox_id)
        if queue.worker is None or queue.worker.done():
            queue.worker = asyncio.get_running_loop().create_task(
                self._work(session_id, queue), name=f"deliver-{session_id}"
            )

    def sends_at_once(self, session_id: int, origin: Origin | None, text: str) -> bool:
        """Whether a reply of this session, committed now, would be sent at once in one
        message: then its turn's end transaction may claim it (`send_claimed`)."""
        if self._closing or session_id in self._queues or origin is None:
            return False
        if self._rt.state not in (GatewayState.RUNNING, GatewayState.QUIET):
            return False  # a drain: replies go out as they always did, claimed one by one
        adapter = self._rt.adapters.get(origin.platform)
        # One piece exactly as a claim would cut it (Outbox.claim_pieces).
        return adapter is not None and len(split_text(text, adapter.capabilities.max_length)) <= 1

    def send_claimed(self, session_id: int, claimed: ClaimedReply, origin: Origin) -> None:
        """Send a committed reply its turn's end transaction claimed. If the session's queue
        got busy since that was decided (a notice committed meanwhile), or a stop began, the
        claim is released first: a reply never waits behind another, or for the next run, as
        'sending' (which a crash would turn into an unknown outcome)."""
        if self._closing or session_id in self._queues:
            task = asyncio.get_running_loop().create_task(self._release(session_id, claimed))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)
            return
        # `sending` from now on: the attempt has begun, and a stop lets it finish.
        queue = self._queues[session_id] = _SessionQueue(origin=origin, sending=True)
        queue.items.append(claimed)
        queue.worker = asyncio.get_running_loop().create_task(
            self._work(session_id, queue), name=f"deliver-{session_id}"
        )

    async def claims_released(self) -> None:
        """Until every claim send_claimed gave back is pending again (and queued, unless a
        stop began)."""
        if self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)

    async def _release(self, session_id: int, claimed: ClaimedReply) -> None:
        item = claimed.item
        if not await self._rt.store.outbox.release_claim(item.id):
            return  # not ours to send any more (settled by an operator or a takeover)
        if not self._closing:
            self.enqueue(session_id, item.id)

    @property
    def busy(self) -> bool:
        """Some session's worker is still sending (or about to)."""
        return any(q.worker is not None and not q.worker.done() for q in self._queues.values())

    @property
    def queued_sessions(self) -> int:
        """Sessions with replies waiting or being sent (the others hold no queue)."""
        return len(self._queues)

    @property
    def backlog(self) -> int:
        return sum(len(q.items) for q in self._queues.values())

    async def idle(self, within: float) -> bool:
        """Wait until every queued reply was handled; False if `within` ran out first."""
        workers = [q.worker for q in self._queues.values() if q.worker and not q.worker.done()]
        if not workers:
            return True
        return await wait_or_timeout(self._rt.clock, asyncio.gather(*workers), within)

    async def close(self, finish_within: float = FINISH_SENDS_WITHIN) -> None:
        """Stop every worker. One that waits (queued, or backing off) stops at once, its
        reply still owed; one in the middle of a send finishes that attempt first, within
        `finish_within` seconds, so a clean stop leaves no reply of unknown fate where a
        crash would not."""
        self._closing = True
        for queue in self._queues.values():
            if queue.worker is not None and not queue.sending:
                queue.worker.cancel()
        in_flight = [
            q.worker
            for q in self._queues.values()
            if q.worker is not None and q.sending and not q.worker.done()
        ]
        if in_flight:
            await asyncio.wait(in_flight, timeout=finish_within)
        await self.claims_released()  # pending for the next run
        for queue in self._queues.values():
            if queue.worker is not None:
                queue.worker.cancel()
        workers = [q.worker for q in self._queues.values() if q.worker is not None]
        await asyncio.gather(*workers, return_exceptions=True)
        self._queues.clear()

    async def _work(self, session_id: int, queue: _SessionQueue) -> None:
        # A reply already claimed is an attempt begun: it goes out even once a stop began.
        while queue.items and (not self._closing or isinstance(queue.items[0], ClaimedReply)):
            entry = queue.items.popleft()
            claimed: ClaimedReply | None = None
            if isinstance(entry, ClaimedReply):
                claimed, outbox_id = entry, entry.item.id
            else:
                outbox_id = entry
            try:
                await self._deliver(session_id, outbox_id, queue, claimed)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not stop later replies
                log.exception("delivery of outbox item %s failed unexpectedly", outbox_id)
        # Nothing left (and nothing can be added before this line runs): the next reply of
        # this session starts a new queue and worker.
        if self._queues.get(session_id) is queue:
            del self._queues[session_id]

    async def _origin(self, session_id: int, queue: _SessionQueue) -> Origin | None:
        if queue.origin is None:
            session = await self._rt.store.sessions.get(session_id)
            queue.origin = None if session is None else session.origin
        return queue.origin

    async def _deliver(
        self,
        session_id: int,
        outbox_id: int,
        queue: _SessionQueue,
        claimed: ClaimedReply | None = None,
    ) -> None:
        """claimed: the reply as its turn's end claimed it, for the first attempt."""
        store = self._rt.store
        origin = await self._origin(session_id, queue)
        adapter = None if origin is None else self._rt.adapters.get(origin.platform)
        if origin is None or adapter is None:
            await store.outbox.mark_attempt_failed(outbox_id, "no route to the chat", final=True)
            self._failed(session_id, outbox_id, "no route to the chat", final=True)
            return
        cut = partial(split_text, limit=adapter.capabilities.max_length)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if self._closing and claimed is None:
                return  # a stop began: the reply stays owed, to the next run
            queue.sending = True
            try:
                again = await self._attempt(
                    session_id, outbox_id, origin, adapter, cut, attempt, claimed
                )
            finally:
                queue.sending = False
            claimed = None  # a retry claims the reply again
            if not again or self._closing:
                return
            await self._rt.clock.sleep(self._backoff.delay(attempt))

    async def _attempt(
        self,
        session_id: int,
        outbox_id: int,
        origin: Origin,
        adapter: Adapter,
        cut: Callable[[str], list[str]],
        attempt: int,
        claimed: ClaimedReply | None = None,
    ) -> bool:
        """One attempt at a reply's owed pieces; True if it is to be tried again. claimed:
        the reply already claimed by its turn's end (no claim of its own, then)."""
        store = self._rt.store
        node = self._rt.node
        fence = None if node is None else (session_id, node.id)
        try:
            if claimed is None:
                claimed = await store.outbox.claim_pieces(outbox_id, cut, fence)
        except LeaseLost as lost:  # the session's owner node delivers it
            log.info("reply %s left to its session's owner: %s", outbox_id, lost)
            return False
        if claimed is None:
            return False  # already sent, failed for good, or unknown: never send again
        try:
            item = claimed.item
            anchor = await anchor_for(
                self.newest.of,
                adapter.reply_anchor,
                origin,
                session_id,
                item.reply_to,
                direct=item.direct,
            )
            message_id = None
            for piece in claimed.owed:
                reply_to = anchor if piece.index == 0 else None
                message_id = await adapter.send(origin, piece.content, reply_to)
                # Committed before the next piece is sent: a retry starts after it.
                await store.outbox.piece_sent(
                    outbox_id, piece.index, message_id, fence, stored=claimed.stored
                )
        except LeaseLost as lost:  # taken over mid-reply: the rest is the new owner's call
            log.warning("reply %s stopped: %s", outbox_id, lost)
            return False
        except DeliveryError as error:
            if error.outcome_unknown:
                await store.outbox.mark_unknown(outbox_id, str(error))
                self.unknown += 1  # the operator's count, at once (not at the next boot)
                self._failed(session_id, outbox_id, str(error), True, origin.platform, unknown=True)
                return False
            final = error.final or attempt == MAX_ATTEMPTS
            await store.outbox.mark_attempt_failed(outbox_id, str(error), final=final)
            self._failed(session_id, outbox_id, str(error), final, origin.platform)
            return not final
        self._rt.events.publish(
            ReplySent(self._rt.clock.now(), session_id, outbox_id, message_id, origin.platform)
        )
        return False

    def _failed(
        self,
        session_id: int,
        outbox_id: int,
        error: str,
        final: bool,
        platform: str = "",
        *,
        unknown: bool = False,
    ) -> None:
        self._rt.events.publish(
            DeliveryFailed(
                self._rt.clock.now(), session_id, outbox_id, error, final, platform, unknown
            )
        )
