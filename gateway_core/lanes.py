"""Lanes: at most one turn per session, and what happens to messages that arrive meanwhile.

A lane owns a FIFO of turn requests and runs them one after another, each in a task of its
own: the next one is started by the previous turn task's completion (its done callback, which
runs once that task has finished, never from inside the turn), so each turn's notifier and
tasks are finished before the next one starts. No task waits between turns: a message to an
idle session costs one task, its turn's (this runs for every message).

busy_mode "queue": a message for a busy session waits its turn. "interrupt": it cancels the
running turn (which records what it left unknown) and runs next, except while a resume turn
has just started: inbound is held behind a recovering session's resume turn for
`recovery.hold_inbound` seconds, so a user's "hello?" cannot kill the recovery it is waiting for.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from gateway_core.events import MessageReceived
from gateway_core.model import Session
from gateway_core.runtime import Runtime
from gateway_core.turn import Outcome, RequestKind, TurnRequest, TurnRunner

log = logging.getLogger(__name__)


@dataclass
class ActiveTurn:
    request: TurnRequest
    started_at: float  # epoch, for display
    started_mono: float
    task: asyncio.Task[Outcome]
    generation: int | None = None  # known once the start transaction committed


@dataclass(slots=True)
class Lane:
    """A session's lane. It stays while the run lasts, so an idle one is kept small: a
    session that spoke once must not cost kilobytes for the rest of the run (no event or
    finished task held while idle, a list rather than a deque for its short queue)."""

    session: Session
    # FIFO, at most lanes.max_queue long: a list (56 bytes empty, a deque is 624).
    queue: list[TurnRequest] = field(default_factory=list)
    current: ActiveTurn | None = None  # None while idle
    last_activity: float = 0.0
    generation: int = 0  # the newest generation this lane has seen start
    # Bumped on every change the snapshot shows, so an idle lane's view is built once and
    # reused (10,000 idle sessions must not cost 10,000 views a tick).
    version: int = 0
    _idle: asyncio.Event | None = None  # made only for someone who waits for it

    def __post_init__(self) -> None:
        self.generation = self.session.generation

    @property
    def idle(self) -> asyncio.Event:
        """Set when the lane has no turn running and starts none (drain waits on it)."""
        if self._idle is None:
            event = asyncio.Event()
            if self.current is None:
                event.set()
                return event  # idle now: nothing to keep until its loop runs again
            self._idle = event
        return self._idle

    def _started(self) -> None:
        if self._idle is not None:
            self._idle.clear()

    def _stopped(self) -> None:
        if self._idle is not None:
            self._idle.set()  # wakes whoever waits; the event itself is not kept
            self._idle = None

    @property
    def busy(self) -> bool:
        return self.current is not None

    @property
    def resume_pending(self) -> bool:
        """A resume turn is queued or running (a second one would be refused anyway by its
        start transaction; this lets an operator hear so at once)."""
        running = self.current is not None and self.current.request.kind is RequestKind.RESUME
        return running or any(r.kind is RequestKind.RESUME for r in self.queue)


class Lanes:
    def __init__(
        self,
        runtime: Runtime,
        runner: TurnRunner,
        on_turn_end: Callable[[int], None] = lambda session_id: None,
    ) -> None:
        self._rt = runtime
        self._runner = runner
        self._on_turn_end = on_turn_end
        self._lanes: dict[int, Lane] = {}
        self._closed = False

    def get(self, session: Session) -> Lane:
        lane = self._lanes.get(session.id)
        if lane is None:
            lane = Lane(session, last_activity=session.updated_at)
            self._lanes[session.id] = lane
        return lane

    def find(self, session_id: int) -> Lane | None:
        return self._lanes.get(session_id)

    def all(self) -> list[Lane]:
        return list(self._lanes.values())

    def running(self) -> list[Lane]:
        return [lane for lane in self._lanes.values() if lane.current is not None]

    def submit(self, session: Session, request: TurnRequest, *, first: bool = False) -> Lane:
        """Queue a turn request (resumes go first) and make sure the lane is moving."""
        lane = self.get(session)
        # The limit is for what users send; a job's notices are few (one per job event).
        limited = not first and request.kind is RequestKind.MESSAGE
        if limited and len(lane.queue) >= self._rt.config.lanes.max_queue:
            raise LaneFull(session.id)
        if first:
            lane.queue.insert(0, request)
        else:
            lane.queue.append(request)
        lane.last_activity = self._rt.clock.now()
        lane.version += 1
        if request.inbox_id is not None:
            self._rt.events.publish(
                MessageReceived(self._rt.clock.now(), session.id, request.inbox_id, len(lane.queue))
            )
        if lane.current is not None and self._should_interrupt(lane, request):
            lane.current.task.cancel()
        self.kick(lane)
        return lane

    def kick(self, lane: Lane) -> None:
        """Start the lane's next turn if it has work, none is running and the gateway takes
        turns."""
        if lane.current is None and lane.queue and self._moving():
            lane._started()
            self._start(lane, lane.queue.pop(0))

    def _moving(self) -> bool:
        return self._rt.accepting_turns and not self._closed

    def kick_all(self) -> None:
        for lane in self._lanes.values():
            self.kick(lane)

    async def close(self) -> None:
        """Start no more turns. A turn still running is let go as it is (a drain before this
        interrupted those it had to: each recorded its interruption); its lane is idle now."""
        self._closed = True
        for lane in self._lanes.values():
            if lane.current is not None:
                self._ended(lane)
                lane._stopped()

    def interrupt(self, session_id: int) -> bool:
        lane = self._lanes.get(session_id)
        if lane is None or lane.current is None:
            return False
        lane.current.task.cancel()
        return True

    def _should_interrupt(self, lane: Lane, request: TurnRequest) -> bool:
        if (
            request.kind is not RequestKind.MESSAGE
            or self._rt.config.lanes.busy_mode != "interrupt"
        ):
            return False
        current = lane.current
        assert current is not None
        if current.request.kind is RequestKind.RESUME:
            held_for = self._rt.clock.monotonic() - current.started_mono
            if held_for < self._rt.config.recovery.hold_inbound:
                return False
        return True

    def _start(self, lane: Lane, request: TurnRequest) -> None:
        lane.version += 1

        def learn_generation(generation: int) -> None:
            if lane.current is not None:
                lane.current.generation = generation
            lane.generation = max(lane.generation, generation)
            lane.version += 1

        task = asyncio.get_running_loop().create_task(
            self._runner.run(lane.session, request, learn_generation),
            name=f"turn-{lane.session.id}",
        )
        lane.current = ActiveTurn(request, self._rt.clock.now(), self._rt.clock.monotonic(), task)
        lane.version += 1
        task.add_done_callback(partial(self._turn_done, lane))

    def _turn_done(self, lane: Lane, task: asyncio.Task[Outcome]) -> None:
        """The turn's task has finished: its outcome logged, the next request started."""
        if lane.current is None or lane.current.task is not task:
            return  # the lanes were closed while it ran: nothing more starts
        if task.cancelled():
            log.info("turn interrupted in session %s", lane.session.id)
        elif task.exception() is not None:
            log.error("turn crashed in session %s", lane.session.id, exc_info=task.exception())
        self._ended(lane)
        if lane.queue and self._moving():
            self._start(lane, lane.queue.pop(0))
        else:
            lane._stopped()

    def _ended(self, lane: Lane) -> None:
        lane.current = None
        lane.last_activity = self._rt.clock.now()
        lane.version += 1
        try:
            self._on_turn_end(lane.session.id)
        except Exception:  # a listener's bug must not stop the lane
            log.exception("turn-end listener failed for session %s", lane.session.id)


class LaneFull(Exception):
    def __init__(self, session_id: int) -> None:
        super().__init__(f"session {session_id} has too many queued messages")
        self.session_id = session_id
