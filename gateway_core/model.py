"""Plain value types shared by every part of the gateway.

Frozen dataclasses and string enums only: no I/O, no behaviour beyond small derived
properties. The store converts rows to and from these; the recovery decision reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from gateway_core.quick_init import quick_frozen_init

T = TypeVar("T")


@quick_frozen_init
@dataclass(frozen=True, slots=True)
class SessionKey:
    """Where a conversation lives: one per chat, or per forum topic inside a chat."""

    platform: str
    chat_id: str
    thread_id: str | None = None

    def __str__(self) -> str:
        return f"{self.platform}:{self.chat_id}:{self.thread_id or '-'}"

    @classmethod
    def parse(cls, text: str) -> SessionKey:
        platform, chat_id, thread = text.split(":", 2)
        return cls(platform, chat_id, None if thread == "-" else thread)


class ChatKind(StrEnum):
    """Who can read a chat: its one user, or many (a group, a supergroup, a channel)."""

    PRIVATE = "private"
    GROUP = "group"


class ReplyAnchorMode(StrEnum):
    """Which answers are sent as replies to the message they answer (docs/architecture.md 5.1).

    auto: in a group every answer; in a private chat only those that are not the immediate
    answer to the user's newest message (resumed turns, notices, a late answer)."""

    AUTO = "auto"
    ALWAYS = "always"
    NEVER = "never"


@quick_frozen_init
@dataclass(frozen=True, slots=True)
class Origin:
    """Where replies for a session go, and who started it."""

    platform: str
    chat_id: str
    thread_id: str | None = None
    user_id: str | None = None
    user_name: str | None = None
    # None: not known (an origin stored before chat kinds were recorded): treated as a group.
    chat_kind: ChatKind | None = None

    @property
    def key(self) -> SessionKey:
        return SessionKey(self.platform, self.chat_id, self.thread_id)


@quick_frozen_init
@dataclass(frozen=True, slots=True)
class Session:
    id: int
    key: SessionKey
    origin: Origin | None
    generation: int
    created_at: float
    updated_at: float


class Role(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"
    SYSTEM = "system"


class MessageKind(StrEnum):
    """What a transcript row is, beyond its role. Recovery reads this."""

    TEXT = "text"
    # A user row the gateway wrote itself to resume an interrupted turn.
    RECOVERY_NOTE = "recovery_note"
    # A user row carrying an internal notification (background process finished, watch match).
    NOTICE = "notice"
    # Tool results of a clarify question that got no answer in time, or never reached the user.
    CLARIFY_TIMEOUT = "clarify_timeout"
    CLARIFY_UNDELIVERED = "clarify_undelivered"
    # A tool result written because the turn was interrupted while the tool ran: effect unknown.
    TOOL_INTERRUPTED = "tool_interrupted"
    # A tool result the gateway wrote after a restart from the call's durable evidence (the
    # exit status of the job the call started): the call's real outcome, not a guess.
    TOOL_RECOVERED = "tool_recovered"
    # Bookkeeping rows that are never replayed to a model.
    META = "meta"


class FinishReason(StrEnum):
    STOP = "stop"
    TOOL_CALLS = "tool_calls"
    LENGTH = "length"
    INTERRUPTED = "interrupted"
    ERROR = "error"


@quick_frozen_init
@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str = "{}"


@quick_frozen_init
@dataclass(frozen=True, slots=True)
class NewMessage:
    """A transcript row before the store has given it a sequence number."""

    role: Role | str
    content: str = ""
    kind: MessageKind | str = MessageKind.TEXT
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    tool_name: str | None = None
    finish_reason: FinishReason | str | None = None
    generation: int = 0
    # None means "now" (the store stamps it); tests and imports may give an explicit time.
    created_at: float | None = None
    # A user's message: its id on the platform. An answer: the platform id of the message it
    # answers (the request of its turn). None for everything else.
    platform_message_id: str | None = None
    reply_to: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """One durable transcript row.

    role, kind and finish_reason are plain strings here because a row read back from disk may
    hold values this version does not know; consumers must treat unknown values defensively.
    created_at may be None for rows whose stored timestamp was missing or unreadable.
    """

    session_id: int
    seq: int
    role: str
    content: str
    kind: str = MessageKind.TEXT
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    tool_name: str | None = None
    finish_reason: str | None = None
    generation: int = 0
    created_at: float | None = None
    # Set when the stored row could not be fully decoded (e.g. tool_calls JSON is garbage).
    malformed: bool = False
    platform_message_id: str | None = None  # a user's message: its id on the platform
    reply_to: str | None = None  # an answer: the platform id of the message it answers


class TurnKind(StrEnum):
    MESSAGE = "message"  # a user's message
    RESUME = "resume"  # the gateway continues an interrupted turn
    NOTICE = "notice"  # a background job's event, told to the agent


class NodeState(StrEnum):
    """A gateway node as its heartbeat row says (several nodes on one PostgreSQL)."""

    RUNNING = "running"
    DRAINING = "draining"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class NodeRecord:
    id: str
    host: str
    pid: int
    state: NodeState
    started_at: float
    heartbeat_at: float


@dataclass(frozen=True, slots=True)
class SessionLease:
    session_id: int
    owner: str | None  # None once released
    epoch: int
    expires_at: float


class TurnOutcome(StrEnum):
    """How a turn ended, as its durable turn row records it."""

    COMPLETED = "completed"
    FAILED = "failed"  # the agent raised; the user was told
    INTERRUPTED = "interrupted"  # cancelled in-process (drain deadline, operator, interrupt mode)
    SUPERSEDED = "superseded"  # a newer generation took over; the answer is kept, not sent
    DROPPED = "dropped"  # a notice that did not become a turn (stale, consumed): no turn row
    CRASHED = "crashed"  # still running when its gateway died: found so by the next boot


# A turn that ran to its end: whatever it wrote is all it was ever going to write.
ENDED_OUTCOMES = frozenset({TurnOutcome.COMPLETED, TurnOutcome.FAILED, TurnOutcome.SUPERSEDED})


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """One turn's durable row: what kind it was and how it ended (None while it runs)."""

    session_id: int
    generation: int
    kind: TurnKind
    run_id: int | None
    started_at: float
    ended_at: float | None = None
    outcome: TurnOutcome | None = None

    @property
    def interrupted(self) -> bool:
        """It did not run to its end: cancelled in-process, or its gateway died under it."""
        return self.outcome in (TurnOutcome.INTERRUPTED, TurnOutcome.CRASHED)


class RecoveryState(StrEnum):
    NONE = "none"
    PENDING = "pending"  # marked: a turn was (or may have been) interrupted
    HELD = "held"  # waiting for an operator decision
    RESUMING = "resuming"  # a resume turn was started and has not completed yet
    SUSPENDED = "suspended"  # never resume automatically


CANDIDATE_STATES = frozenset({RecoveryState.PENDING, RecoveryState.HELD, RecoveryState.RESUMING})


class Told(StrEnum):
    """What the user was told about an interrupted request, once per recovery episode."""

    HELD = "held"  # it waits for an operator
    CLEARED = "cleared"  # it will not be resumed (too old, or an operator dropped it)
    WAITING = "waiting"  # the agent's question never reached them: their reply continues it


class MarkReason(StrEnum):
    DRAIN = "drain"  # marked before a drain waited for the turn
    DRAIN_TIMEOUT = "drain-timeout"  # the drain deadline interrupted the turn
    CRASH = "crash"  # found running after a boot that did not stop cleanly
    OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class RecoveryRecord:
    """The one explicit recovery record a session has."""

    session_id: int
    state: RecoveryState = RecoveryState.NONE
    reason: str | None = None
    marked_at: float | None = None
    last_verdict: str | None = None
    last_explanation: str | None = None
    attempts: int = 0
    last_attempt_at: float | None = None
    updated_at: float | None = None
    # What the user was told in this episode (None: nothing yet). Reset when a new
    # interruption marks the session again after it was cleared.
    told: Told | None = None


class Verdict(StrEnum):
    """What the durable evidence says about an interrupted session (docs/architecture.md 6.2)."""

    SUSPENDED = "suspended"
    NO_ORIGIN = "no-origin"
    # The tail cannot be read as evidence (empty, malformed rows, or a timestamp from the future).
    UNDETERMINED = "undetermined"
    COMPLETE = "complete"
    RECOVERY_LOOP = "recovery-loop"
    AWAITING_USER = "awaiting-user"
    STALE = "stale"
    AMBIGUOUS_TOOL = "ambiguous-tool"
    # A foreground tool call's job is still running: re-adopted, and waited for within the
    # call's own timeout before the turn resumes.
    TOOL_RUNNING = "tool-running"
    RESUMABLE = "resumable"


class RecoveryAction(StrEnum):
    RESUME = "resume"  # start a resume turn now
    HOLD = "hold"  # keep the marker, wait for an operator
    CLEAR = "clear"  # drop the marker: nothing to resume
    WAIT = "wait"  # keep the marker, no synthetic turn; the user's next message continues
    SKIP = "skip"  # suspended: never touched automatically
    AWAIT_JOB = "await-job"  # wait for a re-adopted job, then decide again


class Gate(StrEnum):
    SAFE = "safe"
    OPERATOR = "operator"
    ALL = "all"
    OFF = "off"


class Settlement(StrEnum):
    """How an interrupted tool call was settled from durable evidence after a restart."""

    FINISHED = "finished"  # its job ended with an exit status: the real result is recorded
    STARTED = "started"  # a background start whose job exists: the start itself is the result
    RUNNING = "running"  # its job still runs: re-adopted and waited for
    UNKNOWN = "unknown"  # no evidence settles it: effect unknown


@dataclass(frozen=True, slots=True)
class JobEvidence:
    """What the store knows of the job a tool call started (the call's durable evidence)."""

    process_id: str
    tool_call_id: str
    state: ProcessState
    exit_code: int | None
    end_reason: str | None
    started_at: float
    pid: int | None = None
    output_tail: str = ""


@quick_frozen_init
@dataclass(frozen=True, slots=True)
class SettledCall:
    """One interrupted tool call and what its evidence says."""

    call_id: str
    tool_name: str
    how: Settlement
    explanation: str
    process_id: str | None = None
    exit_code: int | None = None
    # The tool result to record (FINISHED, STARTED); None otherwise.
    result: str | None = None
    # RUNNING: the epoch time by which the call's own timeout runs out.
    deadline: float | None = None
    generation: int = 0  # the turn that made the call (its recovered result belongs to it)


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    action: RecoveryAction
    explanation: str
    # Epoch seconds of the last replayable row, and its age at decision time (None if unknown).
    tail_at: float | None = None
    tail_age: float | None = None
    unresolved_tools: tuple[str, ...] = field(default=())
    # Interrupted tool calls and how their evidence settled them (results to record first).
    settled: tuple[SettledCall, ...] = field(default=())
    # The one message the user gets because their request is not resumed automatically
    # (None: nothing to say, or already said in this episode, or notices are off).
    user_notice: str | None = None
    told: Told | None = None  # what user_notice tells, recorded with it


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One gateway boot. A run with stopped_at None never stopped cleanly (crash or kill)."""

    id: int
    started_at: float
    stopped_at: float | None
    clean: bool | None
    pid: int
    candidates: int = 0


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: float
    actor: str
    action: str
    targets: tuple[str, ...]
    reason: str | None
    outcome: str
    detail: str | None = None


class ProcessState(StrEnum):
    RUNNING = "running"
    EXITED = "exited"
    KILLED = "killed"
    LOST = "lost"  # gone while we were not watching, and no exit code was left behind


@dataclass(frozen=True, slots=True)
class JobRecord:
    """What the store keeps of a background process so it can be re-adopted after a restart."""

    id: str
    session_id: int | None
    generation: int
    command: str
    cwd: str | None
    pid: int | None
    pid_started_at: float | None
    notify_on_complete: bool
    watch_patterns: tuple[str, ...]
    log_path: str | None
    state: ProcessState
    exit_code: int | None
    end_reason: str | None
    consumed: bool
    started_at: float
    ended_at: float | None = None
    # The agent's tool call that started the job (recorded before the job starts), so a
    # restart can settle that call from the job's exit status instead of guessing.
    tool_call_id: str | None = None
    # Where the job runs: the machine (and, on PostgreSQL, the node) that started it. A PID
    # means something only on its own machine: a node taking over another's sessions adopts
    # or signals only jobs of its own host (None: recorded before hosts were, this host's).
    host: str | None = None
    node: str | None = None


class OutboxStatus(StrEnum):
    """Where a reply is on its way to the user (docs/architecture.md section 5)."""

    PENDING = "pending"  # owed: its session's deliverer sends it when its turn in the queue comes
    SENDING = "sending"  # claimed: its send is about to happen or in flight
    SENT = "sent"  # confirmed by the platform, with its message id
    FAILED = "failed"  # refused for good (blocked, bad request): never retried
    UNKNOWN = "unknown"  # its send may or may not have landed: never resent automatically


@quick_frozen_init
@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    session_id: int
    generation: int
    kind: str
    content: str
    status: OutboxStatus
    attempts: int
    last_error: str | None
    platform_message_id: str | None
    created_at: float
    sent_at: float | None
    # The platform id of the message this answers (None: nothing to point at), and whether it
    # is the direct answer of the turn that message started (not a resume's, not a notice).
    reply_to: str | None = None
    direct: bool = False


class PieceStatus(StrEnum):
    """One piece of a reply split to fit the platform's message limit (see store/outbox.py)."""

    PENDING = "pending"
    SENDING = "sending"  # claimed: its send is about to happen or in flight
    SENT = "sent"  # confirmed, with its platform message id
    UNKNOWN = "unknown"  # its send may or may not have landed: never resent automatically


@quick_frozen_init
@dataclass(frozen=True, slots=True)
class ReplyPiece:
    index: int  # 0, 1, ... in sending order
    content: str
    status: PieceStatus
    platform_message_id: str | None = None


@quick_frozen_init
@dataclass(frozen=True, slots=True)
class ClaimedReply:
    """An outbox row claimed for sending, with its pieces as stored at its first claim."""

    item: OutboxItem
    pieces: tuple[ReplyPiece, ...]
    # False for a reply that fits in one message: it has no piece rows (the outbox row is its
    # only piece), so its confirmation is the row's own "sent" and nothing else.
    stored: bool = True

    @property
    def owed(self) -> tuple[ReplyPiece, ...]:
        """The pieces still to send, in order (the first one is already marked sending)."""
        return tuple(p for p in self.pieces if p.status is not PieceStatus.SENT)


@dataclass(frozen=True, slots=True)
class WorkingNotice:
    """The "still working" message of a turn, as recorded while the turn ran."""

    session_id: int
    generation: int
    origin: Origin | None
    message_id: str | None  # None: its first send had not been answered by the platform


class InboxStatus(StrEnum):
    """What became of an inbound update (the inbox row is written before the platform is told
    the update was received, and finished by the step that settles it)."""

    NEW = "new"  # stored, not yet taken by a turn
    DONE = "done"  # a turn took it: it is in the transcript, in the transaction that started it
    ANSWERED = "answered"  # it answered a question the agent had asked: no turn of its own
    SKIPPED = "skipped"  # nothing to do (not a message, or unreadable): the reason is recorded
    REFUSED = "refused"  # its session already had too many messages queued: the user was told


@dataclass(frozen=True, slots=True)
class InboxItem:
    id: int
    platform: str
    update_id: str
    session_key: str | None
    payload: str
    status: InboxStatus
    error: str | None
    received_at: float
    processed_at: float | None
    message_id: str | None = None  # the message's own id on its platform
