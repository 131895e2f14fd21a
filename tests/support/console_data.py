"""Fixed console data: a `Backend` whose every answer is constant, for pictures of the console.

Snapshot tests and `screenshots/make_screenshots.py` render the real `ConsoleApp` over this
backend. Nothing here reads a clock: `taken_at` is a fixed epoch and every age is relative to
it, so two renders of the same screen are identical byte for byte.

The data covers what an operator can meet: sessions in every state on both platforms (a
forum topic, a long user name, a user name holding markup and terminal escapes), a recovery
candidate of every verdict, background jobs in every state (with CPU/RSS, notify and watch
flags, one adopted after a restart), "still working" notifiers, a drain half way through, and
the audit and log tails.

`SCREENS` names the pictures (which keys lead there, over which backend) and `show()` drives
the app there and lets it settle. The screenshots of the README are not made from this data:
screenshots/make_screenshots.py draws the real app over a real gateway (it shares `show()`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from textual.pilot import Pilot
from textual.widgets import Input

from console.link import Link
from gateway_core.control import ActionResult
from gateway_core.events import DrainPhase, DrainProgress
from gateway_core.log_ring import LogEntry
from gateway_core.model import (
    AuditEntry,
    Message,
    MessageKind,
    ProcessState,
    RecoveryState,
    Role,
    ToolCall,
)
from gateway_core.notifiers import NotifierView
from gateway_core.runtime import GatewayState
from gateway_core.snapshot import (
    NOT_DECIDED,
    CandidateView,
    LoopGuardView,
    NodeStatus,
    NodeView,
    ProcessView,
    SessionActivity,
    SessionQuery,
    SessionView,
    Snapshot,
    SnapshotCounts,
    with_sessions,
)

TAKEN_AT = 1_760_000_000.0  # 2025-10-09 08:53:20 UTC: the fixed "now" of every picture
RUN_ID = 42
UPTIME = 3 * 3600 + 17 * 60 + 5.0
MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0

# Untrusted text as a hostile user would send it: markup that would crash or click a Static,
# and terminal escapes (set the title, start blinking). The pictures must show it inert.
HOSTILE_NAME = "mallory [/x] [@click=app.quit]x[/] \x1b[5mblink"
HOSTILE_TEXT = "[/x] [@click=app.quit]click me[/] \x1b]0;pwned\x07\x1b[5mblink\u202eevil"
FORUM_CHAT = "-1001234567890"


def _session(
    session_id: int,
    platform: str,
    chat_id: str,
    user_name: str | None,
    state: str,
    *,
    thread_id: str | None = None,
    generation: int | None = 1,
    turn_age: float | None = None,
    queued: int = 0,
    idle_for: float | None = 30.0,
) -> SessionView:
    # (prompt, completion) tokens this run: a fixed function of the id, zero for a new chat
    tokens = (0, 0) if generation is None else (session_id % 97 * 1531, session_id % 89 * 211)
    key = f"{platform}:{chat_id}:{thread_id or '-'}"
    return SessionView(
        session_id=session_id,
        key=key,
        platform=platform,
        chat_id=chat_id,
        thread_id=thread_id,
        user_name=user_name,
        state=SessionActivity(state),
        generation=generation,
        turn_age=turn_age,
        queued=queued,
        last_activity=0.0 if idle_for is None else TAKEN_AT - idle_for,
        tokens=tokens,
    )


SESSIONS: tuple[SessionView, ...] = (
    _session(101, "loopback", "ada", "ada", "running", generation=4, turn_age=12.0, idle_for=2.0),
    _session(
        102,
        "loopback",
        "bob",
        "bob",
        "running",
        generation=9,
        turn_age=187.0,
        queued=1,
        idle_for=41.0,
    ),
    _session(
        103,
        "telegram",
        FORUM_CHAT,
        "dev-team",
        "running",
        thread_id="42",
        generation=17,
        turn_age=95.0,
        queued=2,
        idle_for=6.0,
    ),
    _session(
        104, "telegram", "5550001", "Zoë", "resuming", generation=6, turn_age=4.0, idle_for=4.0
    ),
    _session(105, "loopback", "cy", "cy", "queued", generation=2, queued=3, idle_for=9.0),
    _session(106, "telegram", "6123987", "fay", "queued", generation=11, queued=1, idle_for=75.0),
    _session(
        107,
        "telegram",
        "8881234",
        "Grzegorz Brzęczyszczykiewicz",
        "running",
        generation=3,
        turn_age=1260.0,
        idle_for=14.0,
    ),
    _session(108, "loopback", "mallory", HOSTILE_NAME, "idle", generation=3, idle_for=130.0),
    _session(
        109,
        "telegram",
        FORUM_CHAT,
        "dev-team",
        "idle",
        thread_id="7",
        generation=22,
        idle_for=12 * MINUTE,
    ),
    _session(110, "telegram", "777", "eve", "idle", generation=5, idle_for=2 * HOUR + 300),
    _session(111, "loopback", "hal", "hal", "idle", generation=1, idle_for=2 * DAY + 3 * HOUR),
    _session(112, "telegram", "4242", None, "idle", generation=None, idle_for=None),
)

RUNNING_IDS = (101, 102, 103, 107)


def _candidate(
    session_id: int,
    user: str | None,
    verdict: str,
    state: str,
    action: str,
    explanation: str,
    *,
    reason: str | None = "crash",
    tail_age: float | None = 5 * MINUTE,
    attempts: int = 0,
    platform: str = "loopback",
    chat_id: str | None = None,
    thread_id: str | None = None,
) -> CandidateView:
    chat = chat_id or f"{user}-1"
    return CandidateView(
        session_id=session_id,
        key=f"{platform}:{chat}:{thread_id or '-'}",
        user_name=user,
        state=RecoveryState(state),
        reason=reason,
        verdict=verdict,
        action=action,
        explanation=explanation,
        tail_age=tail_age,
        attempts=attempts,
        marked_at=TAKEN_AT - UPTIME - 20.0,
    )


CANDIDATES: tuple[CandidateView, ...] = (
    _candidate(
        201,
        "ada",
        "resumable",
        "held",
        "hold",
        "unanswered user message from 4m ago; held earlier, waits for an operator",
        tail_age=4 * MINUTE,
    ),
    _candidate(
        202,
        "bob",
        "ambiguous-tool",
        "held",
        "hold",
        "interrupted during terminal (git push --force origin main): its effect is unknown, "
        "so running the turn again could repeat it",
        tail_age=7 * MINUTE + 12,
    ),
    _candidate(
        203,
        "cy",
        "undetermined",
        "held",
        "hold",
        "the last transcript row (#18) is malformed ('assistant')",
        tail_age=None,
    ),
    _candidate(
        204,
        None,
        "no-origin",
        "held",
        "hold",
        "no stored origin: a resumed turn has nowhere to go",
        platform="telegram",
        chat_id="9990001",
        tail_age=31 * MINUTE,
    ),
    _candidate(
        205,
        "eve",
        "recovery-loop",
        "pending",
        "clear",
        "the tail is our own recovery note (#44): an earlier resume produced nothing",
        attempts=3,
        tail_age=2 * MINUTE,
    ),
    _candidate(
        206,
        "fay",
        "stale",
        "pending",
        "clear",
        "last activity 3d4h ago, older than the freshness window of 6h",
        tail_age=3 * DAY + 4 * HOUR,
    ),
    _candidate(
        207,
        "dev-team",
        "complete",
        "pending",
        "clear",
        "the turn ended with a final answer (#31, stop)",
        platform="telegram",
        chat_id=FORUM_CHAT,
        thread_id="42",
        reason="drain-timeout",
        tail_age=50.0,
    ),
    _candidate(
        208,
        "gus",
        "awaiting-user",
        "pending",
        "wait",
        "the agent was waiting for the user's answer to a question",
        reason="drain",
        tail_age=9 * MINUTE,
    ),
    _candidate(
        209,
        "hal",
        "suspended",
        "suspended",
        "skip",
        "suspended (operator); never resumed automatically",
        reason="operator",
        tail_age=5 * DAY,
    ),
)


def _process(
    process_id: str,
    session_id: int | None,
    command: str,
    state: str,
    age: float,
    last_line: str,
    *,
    exit_code: int | None = None,
    cpu: float | None = None,
    rss: int | None = None,
    notify: bool = False,
    watch: tuple[str, ...] = (),
    watch_status: str = "none",
    detached: bool = False,
    consumed: bool = False,
) -> ProcessView:
    return ProcessView(
        process_id=process_id,
        session_id=session_id,
        command=command,
        state=ProcessState(state),
        age=age,
        exit_code=exit_code,
        cpu_percent=cpu,
        rss=rss,
        children=None if cpu is None else 2,
        last_line=last_line,
        notify_on_complete=notify,
        watch_patterns=watch,
        detached=detached,
        generation=1,
        consumed=consumed,
        watch_status=watch_status,
    )


PROCESSES: tuple[ProcessView, ...] = (
    _process(
        "proc_7f3a9c2e1b04",
        103,
        "make -j4 all && ./run-tests --fast",
        "running",
        6 * MINUTE + 40,
        "compiling unit 6 of 8",
        cpu=187.3,
        rss=412 * 1024 * 1024,
        notify=True,
    ),
    _process(
        "proc_2b8d41e0aa17",
        109,
        "python -m http.server 8080 --bind 127.0.0.1",
        "running",
        48 * MINUTE,
        "ERROR upstream timed out",
        cpu=3.2,
        rss=38 * 1024 * 1024 + 500 * 1024,
        watch=("ERROR",),
        watch_status="watching",
    ),
    _process(
        "proc_c41e0d9a5f32",
        108,
        "tail -f /var/log/app.log",
        "running",
        2 * HOUR + 5 * MINUTE,
        HOSTILE_TEXT,
        cpu=0.0,
        rss=2 * 1024 * 1024,
        detached=True,
        watch=("panic", "FATAL"),
        watch_status="disabled: too many matches",
    ),
    _process(
        "proc_90aa3e7bd611",
        101,
        "pytest -q tests/",
        "exited",
        95.0,
        "412 passed, 3 skipped in 88.41s",
        exit_code=0,
        notify=True,
        consumed=True,
    ),
    _process(
        "proc_5d2c08e4c9b3",
        102,
        "sleep 600",
        "killed",
        11 * MINUTE,
        "",
        exit_code=-9,
    ),
    _process(
        "proc_e17f6a2d0c58",
        None,
        "./scripts/nightly-backup.sh --all",
        "lost",
        9 * HOUR,
        "copying shard 14/40",
        notify=True,
    ),
)

NOTIFIERS: tuple[NotifierView, ...] = (
    NotifierView(107, 3, 60.0, 14.0, 21, "telegram:8881234 Grzegorz Brzęczyszczykiewicz"),
    NotifierView(102, 9, 60.0, 33.0, 3, "loopback:bob bob"),
    NotifierView(103, 17, 90.0, 85.0, 1, f"telegram:{FORUM_CHAT}/42 dev-team"),
)

DRAIN = DrainProgress(
    at=TAKEN_AT - 48.0,
    phase=DrainPhase.WAITING,
    total=7,
    finished=3,
    running=RUNNING_IDS,
    interrupted=(),
    seconds_left=12.0,
)


LOOP_GUARD = LoopGuardView(
    tripped=True,
    boots=(TAKEN_AT - UPTIME - 140.0, TAKEN_AT - UPTIME - 70.0, TAKEN_AT - UPTIME),
    needed=3,
    window=300.0,
    held=(201,),
)


# Several nodes on one PostgreSQL (the pictures with cluster=True): this console is
# attached to gw-2; gw-1 polls Telegram; gw-3 drains; gw-old stopped beating 3 minutes ago.
THIS_NODE = "gw-2"
NODES: tuple[NodeView, ...] = (
    NodeView("gw-1", "app-1.internal", 2211, NodeStatus.RUNNING, TAKEN_AT - 2 * DAY,
             TAKEN_AT - 3.0, 4, ("telegram",)),
    NodeView(THIS_NODE, "app-2.internal", 3107, NodeStatus.RUNNING, TAKEN_AT - UPTIME,
             TAKEN_AT - 1.0, 6),
    NodeView("gw-3", "app-3.internal", 918, NodeStatus.DRAINING, TAKEN_AT - 5 * HOUR,
             TAKEN_AT - 4.0, 1),
    NodeView("gw-old", "app-9.internal", 40112, NodeStatus.LAPSED, TAKEN_AT - 9 * DAY,
             TAKEN_AT - 3 * MINUTE - 12, 0),
)  # fmt: skip
OWNERS = {
    **{session_id: THIS_NODE for session_id in range(101, 109)}, 109: "gw-1", 110: "gw-3",
    111: "gw-1", 201: THIS_NODE, 202: "gw-1", 203: THIS_NODE, 205: THIS_NODE, 206: THIS_NODE,
    207: "gw-1", 208: THIS_NODE, 209: THIS_NODE,
}  # fmt: skip


def clustered(snap: Snapshot) -> Snapshot:
    """The same gateway as one node of several: every node, and who owns what."""
    return replace(
        snap,
        node_id=THIS_NODE,
        nodes=NODES,
        sessions=tuple(replace(v, owner=OWNERS.get(v.session_id)) for v in snap.sessions),
        candidates=tuple(replace(c, owner=OWNERS.get(c.session_id)) for c in snap.candidates),
    )


def snapshot(*, drain: bool = True, loop: bool = False) -> Snapshot:
    """The whole gateway at TAKEN_AT: draining (3 of 7 turns finished) or running; with the
    restart-loop guard tripped if `loop`."""
    by_verdict: dict[str, int] = {}
    for candidate in CANDIDATES:  # the pictures count every row here, suspended ones too
        verdict = candidate.verdict or NOT_DECIDED
        by_verdict[verdict] = by_verdict.get(verdict, 0) + 1
    counts = SnapshotCounts(
        sessions=len(SESSIONS),
        running=sum(1 for s in SESSIONS if s.state in ("running", "resuming")),
        queued=sum(s.queued for s in SESSIONS),
        candidates=len(CANDIDATES),
        by_verdict=by_verdict,
        notifiers=len(NOTIFIERS),
        processes=sum(1 for p in PROCESSES if p.state == "running"),
        unknown_deliveries=1,
        prompt_tokens=sum(s.tokens[0] for s in SESSIONS),
        completion_tokens=sum(s.tokens[1] for s in SESSIONS),
    )
    return Snapshot(
        state=GatewayState.DRAINING if drain else GatewayState.RUNNING,
        run_id=RUN_ID,
        started_at=TAKEN_AT - UPTIME,
        uptime=UPTIME,
        sessions=SESSIONS,
        candidates=CANDIDATES,
        notifiers=NOTIFIERS,
        drain=DRAIN if drain else None,
        loop_guard_tripped=loop,
        loop_guard=LOOP_GUARD if loop else None,
        processes=PROCESSES,
        counts=counts,
        taken_at=TAKEN_AT,
    )


def _transcript(session_id: int) -> list[Message]:
    def row(
        seq: int,
        role: str,
        content: str,
        ago: float,
        *,
        kind: str = MessageKind.TEXT,
        calls: tuple[ToolCall, ...] = (),
        tool: str | None = None,
    ) -> Message:
        return Message(
            session_id=session_id,
            seq=seq,
            role=role,
            content=content,
            kind=kind,
            tool_calls=calls,
            tool_call_id=None if tool is None else f"call_{seq}",
            tool_name=tool,
            finish_reason="tool_calls" if calls else ("stop" if role == Role.ASSISTANT else None),
            created_at=TAKEN_AT - ago,
        )

    build = '{"command": "make -j4 all && ./run-tests --fast", "background": true}'
    return [
        row(1, Role.USER, "hello", 40 * MINUTE),
        row(2, Role.ASSISTANT, "Hi! What can I do for you today?", 40 * MINUTE - 3),
        row(3, Role.USER, "please build the release branch and run the tests", 9 * MINUTE),
        row(4, Role.ASSISTANT, "", 9 * MINUTE - 4, calls=(ToolCall("call_4", "terminal", build),)),
        row(
            5,
            Role.TOOL,
            "started proc_7f3a9c2e1b04 in the background",
            9 * MINUTE - 5,
            tool="terminal",
        ),
        row(6, Role.ASSISTANT, "The build is running; I will tell you when it finishes.", 530.0),
        row(7, Role.USER, f"also look at this: {HOSTILE_TEXT}", 3 * MINUTE),
        row(
            8,
            Role.USER,
            "[background] proc_90aa3e7bd611 exited with code 0",
            95.0,
            kind=MessageKind.NOTICE,
        ),
        row(
            9,
            Role.ASSISTANT,
            "",
            60.0,
            calls=(ToolCall("call_9", "process", '{"action": "poll", "id": "proc_7f3a"}'),),
        ),
        row(10, Role.TOOL, "running, 6m40s, last: compiling unit 6 of 8", 58.0, tool="process"),
    ]


PROCESS_LOG = [
    "make[1]: Entering directory '/srv/app/build'",
    *(f"compiling unit {i} of 8" for i in range(1, 7)),
    "warning: unused variable 'retries' [-Wunused-variable]",
    f"hostile output: {HOSTILE_TEXT}",
]

AUDIT: tuple[AuditEntry, ...] = (
    AuditEntry(17, TAKEN_AT - 48.0, "operator", "drain", (), None, "ok", "drain started, 60 s"),
    AuditEntry(
        16,
        TAKEN_AT - 3 * MINUTE,
        "operator",
        "force-resume",
        ("202",),
        "checked with bob: the push did not happen",
        "ok",
        "resume turn started",
    ),
    AuditEntry(15, TAKEN_AT - 4 * MINUTE, "operator", "approve", ("201", "205"), None, "ok", None),
    AuditEntry(
        14,
        TAKEN_AT - 6 * MINUTE,
        "alice",
        "clear",
        ("206",),
        None,
        "refused",
        "clear refused: this console is read-only",
    ),
    AuditEntry(
        13,
        TAKEN_AT - 9 * MINUTE,
        "operator",
        "kill-process",
        ("proc_5d2c08e4c9b3",),
        None,
        "ok",
        "killed 3 processes",
    ),
    AuditEntry(
        12,
        TAKEN_AT - 25 * MINUTE,
        "operator",
        "suspend",
        ("209",),
        "operator",
        "ok",
        f"note from a user: {HOSTILE_TEXT}",
    ),
    AuditEntry(11, TAKEN_AT - 2 * HOUR, "operator", "resume-intake", (), None, "ok", None),
    AuditEntry(10, TAKEN_AT - 2 * HOUR - 90, "operator", "quiet", (), None, "ok", None),
)

LOG_ENTRIES = [
    LogEntry(1, TAKEN_AT - 60, "INFO", "gateway_core.service.runner", "DrainProgress", None,
             "phase=waiting total=7 finished=0 seconds_left=60 running=7"),
    LogEntry(2, TAKEN_AT - 48, "INFO", "gateway_core.service.runner", "TurnFinished",
             "telegram:777:-", "generation=5 outcome=completed seconds=41.23"),
    LogEntry(3, TAKEN_AT - 40, "INFO", "gateway_core.service.runner", "TurnFinished",
             "telegram:5550001:-", "generation=6 outcome=completed seconds=3.91"),
    LogEntry(4, TAKEN_AT - 25, "WARNING", "gateway_core.adapters.telegram", None,
             "telegram:6123987:-", "sendMessage 429: retrying in 3 s"),
    LogEntry(5, TAKEN_AT - 18, "INFO", "gateway_core.service.runner", "MessageReceived",
             "loopback:mallory:-", f"text={HOSTILE_TEXT}"),
    LogEntry(6, TAKEN_AT - 9, "INFO", "gateway_core.service.runner", "WatchMatched",
             "telegram:-1001234567890:7", "process_id=proc_2b8d41e0aa17 pattern=ERROR"),
    LogEntry(7, TAKEN_AT - 1, "INFO", "gateway_core.service.runner", "NotifierFired",
             "telegram:8881234:-", "generation=3 count=21 edited=True"),
]  # fmt: skip
LOG_LINES = [
    "2025-10-09 08:52:20,114 INFO gateway_core.gateway drain started: 7 turns running, 60 s",
    "2025-10-09 08:52:31,902 INFO gateway_core.lanes turn 110/5 completed in 41.2 s",
    "2025-10-09 08:52:40,016 INFO gateway_core.lanes turn 104/6 completed in 3.9 s",
    "2025-10-09 08:52:55,771 WARNING gateway_core.adapters.telegram sendMessage 429: retry 3 s",
    "2025-10-09 08:53:02,480 INFO gateway_core.lanes turn 111/1 completed in 12.0 s",
    f"2025-10-09 08:53:05,003 INFO gateway_core.intake message from mallory: {HOSTILE_TEXT}",
    "2025-10-09 08:53:11,650 INFO gateway_core.processes proc_2b8d41e0aa17 watch match: ERROR",
    "2025-10-09 08:53:19,998 INFO gateway_core.notifiers still working: 107/3, 21 sent",
]


@dataclass(frozen=True, slots=True)
class ActCall:
    action: str
    targets: tuple[str, ...]
    reason: str | None
    timeout: float | None


@dataclass
class StaticBackend:
    """The `console.backend.Backend` protocol over constant data; actions are only recorded."""

    read_only: bool = False
    actor: str = "operator"
    drain: bool = True
    loop: bool = False
    cluster: bool = False  # one node of several on PostgreSQL (else alone, on SQLite)
    calls: list[ActCall] = field(default_factory=list)

    @property
    def link(self) -> Link | None:
        return None

    def on_link_change(self, callback: Callable[[], None]) -> None:
        pass

    async def snapshot(self, query: SessionQuery | None = None) -> Snapshot:
        snap = snapshot(drain=self.drain, loop=self.loop)
        return with_sessions(clustered(snap) if self.cluster else snap, query)

    async def transcript_tail(self, session_id: int, limit: int = 30) -> list[Message]:
        if session_id not in {s.session_id for s in SESSIONS}:
            return []
        return _transcript(session_id)[-limit:]

    async def process_log(self, process_id: str, limit: int = 200) -> list[str]:
        known = {p.process_id for p in PROCESSES}
        return PROCESS_LOG[-limit:] if process_id in known else []

    async def audit_tail(self, limit: int = 100) -> list[AuditEntry]:
        return list(AUDIT[:limit])  # newest first, as the store returns them

    async def log_tail(self, limit: int = 200) -> list[str]:
        return LOG_LINES[-limit:]

    async def log_entries(self, after: int = 0, limit: int = 500) -> list[LogEntry]:
        return [e for e in LOG_ENTRIES if e.seq > after][-limit:]

    async def act(
        self,
        action: str,
        targets: Sequence[str] = (),
        *,
        reason: str | None = None,
        timeout: float | None = None,
    ) -> ActionResult:
        self.calls.append(ActCall(action, tuple(targets), reason, timeout))
        done = ", ".join(targets) or "the gateway"
        return ActionResult(True, f"{action}: {done} (recorded, static backend)")


def static_backend(
    read_only: bool = False, drain: bool = True, loop: bool = False, cluster: bool = False
) -> StaticBackend:
    """A backend over the fixed data: draining (the overview shows progress) unless drain=False,
    the restart-loop guard tripped if loop, one node of several if cluster."""
    return StaticBackend(read_only=read_only, drain=drain, loop=loop, cluster=cluster)


# -- the pictures -------------------------------------------------------------------------

SIZE = (120, 40)


@dataclass(frozen=True, slots=True)
class Screen:
    name: str
    keys: tuple[str, ...]
    about: str
    read_only: bool = False
    drain: bool = True
    cluster: bool = False


SCREENS: tuple[Screen, ...] = (
    Screen("overview", (), "Overview during a drain: 3 of 7 turns finished, 12 s left"),
    Screen("sessions", ("2",), "Sessions, busy first, with the highlighted session's transcript"),
    Screen(
        "recovery",
        ("3", "down", "space"),
        "Recovery: every verdict, one candidate marked",
        drain=False,
    ),
    Screen("processes", ("4",), "Background jobs: running, exited, killed, lost, adopted"),
    Screen("timers", ("5",), "'Still working' notifiers"),
    Screen("audit", ("6",), "Audit trail and the gateway log"),
    Screen(
        "confirm",
        ("3", "space", "down", "space", "a"),
        "Approving two marked candidates",
        drain=False,
    ),
    Screen("force_resume", ("3", "down", "f"), "Force-resume asks for a reason", drain=False),
    Screen("leave", ("q",), "Leaving: detach, or drain and stop"),
    Screen("help", ("3", "question_mark"), "Help: the keys of the recovery tab", drain=False),
    Screen("read_only", ("3",), "Read-only: no mutating keys", read_only=True, drain=False),
    Screen("nodes", ("7",), "Nodes: four on one PostgreSQL, this one marked", cluster=True),
    Screen("nodes_alone", ("7",), "Nodes on SQLite: this gateway runs alone"),
    Screen("sessions_cluster", ("2",), "Sessions on a node: which node owns each", cluster=True),
    Screen(
        "recovery_cluster",
        ("3", "down"),
        "Recovery on a node: another node's candidate, its keys refused here",
        drain=False,
        cluster=True,
    ),
)
BY_SCREEN = {screen.name: screen for screen in SCREENS}


async def show(pilot: Pilot[str], keys: Sequence[str]) -> None:
    """Press `keys`, then wait until the picture is still: background work (the transcript
    pane's loader) done, animations over, and no cursor that blinks between two renders."""
    await pilot.pause()
    if keys:
        await pilot.press(*keys)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    for box in pilot.app.screen.query(Input):
        box.cursor_blink = False  # a blinking cursor is visible in one render and not the next
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()
