"""An immutable picture of the whole gateway, for the console, the CLI and tests, and how it
is built.

Built on demand from in-memory state only (no I/O), so the console can take one at 1-2 Hz.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum

from gateway_core.events import DrainProgress
from gateway_core.lanes import Lane
from gateway_core.model import ProcessState, RecoveryState, Session, TurnKind
from gateway_core.notifiers import NotifierView
from gateway_core.processes.registry import TrackedProcess
from gateway_core.runtime import GatewayState


class SessionActivity(StrEnum):
    """What a session's lane is doing now."""

    IDLE = "idle"
    QUEUED = "queued"  # messages wait, no turn runs (quiet, or between turns)
    RUNNING = "running"
    RESUMING = "resuming"  # running a resumed turn


@dataclass(frozen=True, slots=True)
class SessionView:
    session_id: int
    key: str
    platform: str
    chat_id: str
    thread_id: str | None
    user_name: str | None
    state: SessionActivity
    generation: int | None
    turn_age: float | None  # seconds the current turn has run
    queued: int
    last_activity: float
    tokens: tuple[int, int] = (0, 0)  # (prompt, completion) the agent reported, this run
    # On a node: the node whose lease holds the session now (None: no node holds it, or
    # SQLite, where there are no nodes). Read from the shared store at each snapshot.
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class CandidateView:
    session_id: int
    key: str
    user_name: str | None
    state: RecoveryState
    reason: str | None
    verdict: str | None
    action: str | None
    explanation: str | None
    tail_age: float | None  # as of the last refresh of the candidates (see tail_at)
    attempts: int
    marked_at: float | None
    # How each interrupted tool call was settled from its evidence ("terminal: finished
    # (exit 0)", "terminal: running", "terminal: unknown").
    settled: tuple[str, ...] = ()
    told: str | None = None  # what the user was told about it (held, cleared, waiting)
    # The durable time of the last replayable transcript row: a view computes the age from
    # it and its own "now" at every refresh, so an age never freezes between refreshes.
    tail_at: float | None = None
    owner: str | None = None  # as SessionView.owner: who may act on it


@dataclass(frozen=True, slots=True)
class ProcessView:
    process_id: str
    session_id: int | None
    command: str
    state: ProcessState
    age: float  # seconds since it started
    exit_code: int | None
    cpu_percent: float | None
    rss: int | None
    children: int | None
    last_line: str  # raw text: the console sanitises it
    notify_on_complete: bool
    watch_patterns: tuple[str, ...]
    detached: bool  # re-adopted after a restart
    generation: int = 0  # the turn that owns the job's events
    consumed: bool = False  # its completion was taken (wait, log to the end, kill, notice)
    watch_status: str = "none"  # none | watching | disabled: ...
    watch_delivered: int = 0
    watch_suppressed: int = 0


@dataclass(frozen=True, slots=True)
class LoopGuardView:
    """The restart-loop guard at this boot. `boots`: the start times of the chain of boots
    with recovery candidates that tripped it, oldest first, this boot last."""

    tripped: bool
    boots: tuple[float, ...]
    needed: int  # boots in a chain that trip it (recovery.loop_boots)
    window: float  # seconds between two boots of a chain (recovery.loop_window)
    held: tuple[int, ...]  # sessions it held back that would have been resumed
    reset_by: str | None = None
    reset_at: float | None = None

    @property
    def active(self) -> bool:
        return self.tripped and self.reset_by is None


@dataclass(frozen=True, slots=True)
class PreviousRun:
    run_id: int
    started_at: float
    stopped_at: float | None
    clean: bool | None  # None: it never recorded a stop (killed, or still running)


class NodeStatus(StrEnum):
    """A node as the others see it: what its heartbeat row says, and whether it is late."""

    RUNNING = "running"
    DRAINING = "draining"
    LAPSED = "lapsed"  # not stopped, but no heartbeat within the lease TTL: its leases are free
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class NodeView:
    """One gateway node on the shared PostgreSQL store, from its heartbeat row and leases.
    Times are durable (the store's): a view computes the heartbeat's age from its own now."""

    node_id: str
    host: str
    pid: int
    state: NodeStatus
    started_at: float
    heartbeat_at: float
    sessions: int  # session leases it holds, not lapsed
    intake: tuple[str, ...] = ()  # the intake leases it holds (e.g. "telegram")


NOT_DECIDED = "not decided yet"  # a candidate whose verdict is still being worked out


@dataclass(frozen=True, slots=True)
class SnapshotCounts:
    """What a snapshot counts, by name. `sessions` covers every stored session once the
    store has been asked (session_listing.py); `candidates` leaves suspended sessions out."""

    sessions: int = 0
    running: int = 0  # lanes running a turn now
    queued: int = 0  # messages waiting in lanes
    candidates: int = 0
    suspended: int = 0
    by_verdict: Mapping[str, int] = field(default_factory=dict)  # candidates, not suspended
    notifiers: int = 0
    processes: int = 0  # background jobs running
    unknown_deliveries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    sessions_matching: int | None = None  # only when a query filtered by text

    def rows(self) -> list[tuple[str, int]]:
        """Every count as (name, value), verdicts as "verdict <name>", for a plain table."""
        found = [
            (f.name, getattr(self, f.name))
            for f in fields(self)
            if f.name != "by_verdict" and getattr(self, f.name) is not None
        ]
        found += [(f"verdict {verdict}", n) for verdict, n in sorted(self.by_verdict.items())]
        return sorted(found)


@dataclass(frozen=True, slots=True)
class Snapshot:
    state: GatewayState
    run_id: int | None
    started_at: float | None
    uptime: float
    sessions: tuple[SessionView, ...]
    candidates: tuple[CandidateView, ...]
    notifiers: tuple[NotifierView, ...]
    drain: DrainProgress | None  # the latest drain progress, while or after a drain
    loop_guard_tripped: bool
    processes: tuple[ProcessView, ...] = ()
    counts: SnapshotCounts = field(default_factory=SnapshotCounts)
    taken_at: float = 0.0  # the gateway clock's epoch time when this was taken (ages use it)
    loop_guard: LoopGuardView | None = None  # why the guard tripped, what it holds
    previous_run: PreviousRun | None = None  # the run before this one
    previous_drain: DrainProgress | None = None  # its drain, when it ran in this process
    # On PostgreSQL: this gateway's node id and every node of the shared store. On SQLite
    # node_id is None and nodes is empty: one gateway per state directory, nothing shared.
    node_id: str | None = None
    nodes: tuple[NodeView, ...] = ()

    def owned_elsewhere(self, owner: str | None) -> bool:
        """Whether a session with this owner is held by another node than this one."""
        return owner is not None and self.node_id is not None and owner != self.node_id


def tail_age(view: CandidateView, now: float) -> float | None:
    """How old the candidate's last transcript row is at `now` (a snapshot's taken_at)."""
    if view.tail_at is None:
        return view.tail_age
    return max(0.0, now - view.tail_at)


def candidate_counts(candidates: tuple[CandidateView, ...]) -> tuple[int, int, dict[str, int]]:
    """(candidates, suspended, candidates by verdict). A suspended session is never resumed
    automatically and no operator action but unsuspend applies to it: it is counted apart,
    not as a candidate."""
    suspended = sum(1 for c in candidates if c.state is RecoveryState.SUSPENDED)
    by_verdict: dict[str, int] = {}
    for candidate in candidates:
        if candidate.state is not RecoveryState.SUSPENDED:
            key = candidate.verdict or NOT_DECIDED
            by_verdict[key] = by_verdict.get(key, 0) + 1
    return len(candidates) - suspended, suspended, by_verdict


SESSION_ORDERS = ("busy", "id", "recent")
_BUSY_RANK = {
    SessionActivity.RUNNING: 0,
    SessionActivity.RESUMING: 0,
    SessionActivity.QUEUED: 1,
    SessionActivity.IDLE: 2,
}


@dataclass(frozen=True, slots=True)
class SessionQuery:
    """Which sessions a view wants: a console shows a few hundred of 10,000, and over the
    control socket only those are encoded and sent (the counts always cover all of them).

    order: busy (running, then queued, then the rest; by id within each) | id | recent."""

    order: str = "busy"
    text: str = ""  # substring of the session key or user name, case-insensitive
    limit: int | None = 200


def select_sessions(
    sessions: tuple[SessionView, ...], query: SessionQuery
) -> tuple[SessionView, ...]:
    if query.limit == 0:
        return ()  # counts only: no need to look at 10,000 sessions
    views = list(sessions)
    if query.text:
        needle = query.text.lower()
        views = [
            v for v in views if needle in v.key.lower() or needle in (v.user_name or "").lower()
        ]
    if query.order == "id":
        views.sort(key=lambda v: v.session_id)
    elif query.order == "recent":
        views.sort(key=lambda v: (-v.last_activity, v.session_id))
    else:
        views.sort(key=lambda v: (_BUSY_RANK.get(v.state, 3), v.session_id))
    return tuple(views if query.limit is None else views[: max(query.limit, 0)])


def stored_session_view(session: Session) -> SessionView:
    """A session of the store that has no lane in this run: idle, as last stored."""
    origin = session.origin
    return SessionView(
        session_id=session.id,
        key=str(session.key),
        platform=session.key.platform,
        chat_id=session.key.chat_id,
        thread_id=session.key.thread_id,
        user_name=None if origin is None else origin.user_name,
        state=SessionActivity.IDLE,
        generation=session.generation or None,
        turn_age=None,
        queued=0,
        last_activity=session.updated_at,
    )


def merge_sessions(
    live: tuple[SessionView, ...], stored: Sequence[Session], query: SessionQuery
) -> tuple[SessionView, ...]:
    """The query's sessions out of this run's lanes (`live`, all of them) and the store's
    best `query.limit` by the same order (`stored`, already in that order): a live view wins
    over its stored row. Every live session is stored too, and a lane's activity is never
    older than its stored row, so only a few live views can outrank the stored ones: those
    are picked out, and 10,000 idle lanes are never sorted (this runs once a tick)."""
    if query.limit == 0:
        return ()
    by_id = {view.session_id: view for view in live}
    rows = [by_id.get(session.id) or stored_session_view(session) for session in stored]
    if query.order == "id":
        chosen = rows  # the store's first ids are the first ids, live or not
    elif query.order == "recent":
        # Only a live view newer than the last stored row can climb into the result.
        full = query.limit is not None and len(stored) >= query.limit
        floor = stored[-1].updated_at if full and stored else float("-inf")
        shown = {view.session_id for view in rows}
        newer = [v for v in live if v.session_id not in shown and v.last_activity >= floor]
        chosen = rows + [v for v in newer if _matches(v, query.text)]
    else:
        busy = [v for v in live if v.state is not SessionActivity.IDLE and _matches(v, query.text)]
        busy_ids = {view.session_id for view in busy}
        chosen = busy + [view for view in rows if view.session_id not in busy_ids]
    return select_sessions(tuple(chosen), query)


def _matches(view: SessionView, text: str) -> bool:
    needle = text.lower()
    return not text or needle in view.key.lower() or needle in (view.user_name or "").lower()


def with_sessions(snapshot: Snapshot, query: SessionQuery | None) -> Snapshot:
    """The snapshot with only the sessions the query asks for (all of them for None)."""
    if query is None:
        return snapshot
    return replace(snapshot, sessions=select_sessions(snapshot.sessions, query))


# -- building it ---------------------------------------------------------------------------
#
# From in-memory state only, on the caller's loop (no I/O). Idle sessions' views are built once
# and reused while their lane does not change (10,000 idle sessions must not cost 10,000
# views a tick): the cache keeps each view with the lane version it was built from.


@dataclass
class SnapshotCache:
    sessions: dict[int, tuple[int, SessionView]] = field(default_factory=dict)


def session_view(lane: Lane, now_mono: float, usage: Mapping[int, tuple[int, int]]) -> SessionView:
    current = lane.current
    if current is not None:
        resumed = current.request.kind is TurnKind.RESUME
        state = SessionActivity.RESUMING if resumed else SessionActivity.RUNNING
    else:
        state = SessionActivity.QUEUED if lane.queue else SessionActivity.IDLE
    key = lane.session.key
    origin = lane.session.origin
    return SessionView(
        session_id=lane.session.id,
        key=str(key),
        platform=key.platform,
        chat_id=key.chat_id,
        thread_id=key.thread_id,
        user_name=None if origin is None else origin.user_name,
        state=state,
        generation=lane.generation if current is None else current.generation,
        turn_age=None if current is None else now_mono - current.started_mono,
        queued=len(lane.queue),
        last_activity=lane.last_activity,
        tokens=usage.get(lane.session.id, (0, 0)),
    )


def process_view(job: TrackedProcess, now: float) -> ProcessView:
    record = job.record
    sample, watcher = job.sample, job.watcher
    return ProcessView(
        process_id=job.id,
        session_id=record.session_id,
        command=record.command,
        state=job.state,
        age=max(0.0, (record.ended_at or now) - record.started_at),
        exit_code=record.exit_code,
        cpu_percent=None if sample is None else sample.cpu_percent,
        rss=None if sample is None else sample.rss,
        children=None if sample is None else sample.children,
        last_line=job.output.last_line,
        notify_on_complete=record.notify_on_complete,
        watch_patterns=record.watch_patterns,
        detached=job.detached,
        generation=record.generation,
        consumed=record.consumed,
        watch_status="none" if watcher is None else watcher.status.value,
        watch_delivered=0 if watcher is None else watcher.delivered,
        watch_suppressed=0 if watcher is None else watcher.suppressed_total,
    )


@dataclass(frozen=True, slots=True)
class LivePicture:
    """What a live run shows (gathered by the gateway from its parts)."""

    lanes: Sequence[Lane]
    notifiers: Sequence[NotifierView]
    jobs: Sequence[TrackedProcess]
    candidates: tuple[CandidateView, ...]
    usage: Mapping[int, tuple[int, int]]
    unknown_deliveries: int
    uptime: float


def build_snapshot(
    live: LivePicture | None,
    cache: SnapshotCache,
    *,
    state: GatewayState,
    run_id: int | None,
    started_at: float | None,
    loop_guard: LoopGuardView | None,
    previous_run: PreviousRun | None,
    drain: DrainProgress | None,
    previous_drain: DrainProgress | None,
    now: float,
    now_mono: float,
) -> Snapshot:
    sessions: list[SessionView] = []
    running = queued = 0
    if live is not None:
        for lane in live.lanes:
            current = lane.current
            queued += len(lane.queue)
            if current is None:
                cached = cache.sessions.get(lane.session.id)
                if cached is not None and cached[0] == lane.version:
                    sessions.append(cached[1])  # idle and unchanged: built once
                    continue
            else:
                running += 1
            view = session_view(lane, now_mono, live.usage)
            cache.sessions[lane.session.id] = (lane.version, view)
            sessions.append(view)
    usage = {} if live is None else live.usage
    processes = () if live is None else tuple(process_view(job, now) for job in live.jobs)
    candidates = () if live is None else live.candidates
    notifiers = () if live is None else tuple(live.notifiers)
    candidate_total, suspended, by_verdict = candidate_counts(candidates)
    counts = SnapshotCounts(
        sessions=len(sessions),
        running=running,
        queued=queued,
        candidates=candidate_total,
        suspended=suspended,
        by_verdict=by_verdict,
        notifiers=len(notifiers),
        processes=sum(1 for p in processes if p.state == ProcessState.RUNNING),
        unknown_deliveries=0 if live is None else live.unknown_deliveries,
        prompt_tokens=sum(p for p, _ in usage.values()),
        completion_tokens=sum(c for _, c in usage.values()),
    )
    return Snapshot(
        state=state,
        run_id=run_id,
        started_at=started_at,
        uptime=0.0 if live is None else live.uptime,
        sessions=tuple(sessions),
        candidates=candidates,
        notifiers=notifiers,
        drain=drain,
        processes=processes,
        loop_guard_tripped=loop_guard is not None and loop_guard.active,
        counts=counts,
        taken_at=now,
        loop_guard=loop_guard,
        previous_run=previous_run,
        previous_drain=previous_drain,
    )
