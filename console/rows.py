"""Snapshot views turned into table rows: pure functions, no widgets.

Every cell is a `Cell`: its text and its tone (what it means; the stylesheet says how it
looks). Untrusted parts (names, commands, output, reasons) go through `safety.clean`. Column
widths are fixed here, once, so a table never re-measures itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from console.actions import BY_NAME
from console.durations import duration
from console.safety import clean
from console.tones import STATE_TONES, VERDICT_TONES, Tone
from gateway_core.model import AuditEntry
from gateway_core.notifiers import NotifierView
from gateway_core.snapshot import CandidateView, NodeStatus, NodeView, ProcessView, SessionView


class Cell(NamedTuple):
    text: str
    tone: Tone = Tone.PLAIN


Cells = tuple[Cell, ...]


@dataclass(frozen=True, slots=True)
class Column:
    """width: the least it needs. drop: 0 is always shown; past that, the higher the sooner
    it goes when the table is too narrow. flex: its share of the spare width (text columns
    take it; numbers and states keep their width)."""

    key: str
    label: str
    width: int
    drop: int = 0
    flex: int = 0


SESSION_COLUMNS = (
    Column("id", "#", 6),
    Column("where", "Conversation", 24, flex=1),
    Column("state", "State", 8),
    # Which node owns it; the tab leaves it out where the gateway runs alone (SQLite).
    Column("owner", "Node", 10, drop=1),
    Column("gen", "Gen", 4, drop=3),
    Column("age", "Turn", 6, drop=1),
    Column("queue", "Queue", 5, drop=2),
    Column("activity", "Active", 10, drop=2),
)
CANDIDATE_COLUMNS = (
    Column("mark", "✓", 1),
    Column("id", "#", 5),
    Column("where", "Conversation", 18, flex=1),
    Column("verdict", "Verdict", 14),
    Column("state", "State", 9, drop=1),
    Column("keys", "Keys", 5),
    Column("tail", "Tail age", 8, drop=2),
    Column("reason", "Reason", 13, drop=3),
    Column("tries", "Tries", 5, drop=4),
    Column("why", "Explanation", 16, flex=4),
)
PROCESS_COLUMNS = (
    Column("id", "Process", 17),
    Column("owner", "Owner", 5, drop=4),
    Column("state", "State", 9),
    Column("age", "Age", 6, drop=1),
    Column("cpu", "CPU%", 4, drop=2),
    Column("rss", "RSS", 6, drop=2),
    Column("command", "Command", 16, flex=2),
    Column("watch", "Notify/watch", 14, drop=3),
    Column("last", "Last output", 14, drop=1, flex=2),
)
TIMER_COLUMNS = (
    Column("id", "#", 6),
    Column("where", "Conversation", 30, flex=1),
    Column("gen", "Gen", 5, drop=2),
    Column("interval", "Every", 7, drop=1),
    Column("next", "Next in", 8),
    Column("sent", "Sent", 5, drop=1),
)
CELL_PADDING = 2  # a DataTable column is its width plus one space each side


def fit_columns(columns: Sequence[Column], room: int) -> list[tuple[Column, int]]:
    """The columns shown in `room` cells and the width of each: the most droppable go first
    until the rest fit, then the spare width is shared by the flexible ones."""
    shown = list(columns)
    while len(shown) > 1 and sum(c.width + CELL_PADDING for c in shown) > room:
        droppable = [c for c in shown if c.drop > 0]
        if not droppable:
            break
        shown.remove(max(droppable, key=lambda c: (c.drop, shown.index(c))))
    spare = max(0, room - sum(c.width + CELL_PADDING for c in shown))
    flex = sum(c.flex for c in shown)
    widths = {c.key: c.width for c in shown}
    if flex:
        given = 0
        flexible = [c for c in shown if c.flex]
        for column in flexible:
            extra = spare * column.flex // flex
            widths[column.key] += extra
            given += extra
        widths[flexible[-1].key] += spare - given  # the rounding remainder
    return [(c, widths[c.key]) for c in shown]


def size(rss: int | None) -> str:
    if rss is None:
        return "–"
    for unit in ("B", "K", "M", "G"):
        if rss < 1024 or unit == "G":
            return f"{rss:.0f}{unit}" if unit == "B" else f"{rss:.1f}{unit}"
        rss /= 1024  # type: ignore[assignment]
    return "–"


def where(platform: str, chat_id: str, thread_id: str | None, user: str | None) -> str:
    place = f"{platform}:{chat_id}" + (f"/{thread_id}" if thread_id else "")
    return f"{place} {user}" if user else place


def display_key(key: str, user: str | None = None) -> str:
    """A stored session key as people read it: no "-" for a missing topic."""
    shown = key.removesuffix(":-")
    return f"{shown} {user}" if user else shown


def plain(value: object, tone: Tone = Tone.PLAIN) -> Cell:
    """Our own text (numbers, states): trusted."""
    return Cell(str(value), tone)


def safe(value: object, limit: int, tone: Tone = Tone.PLAIN) -> Cell:
    """Untrusted text (names, commands, output), made inert."""
    return Cell(clean(value, limit), tone)


THIS_NODE = "this node"
REMOTE = "remote"  # the state of a session another node runs: this node cannot see its lane


def owner_cell(owner: str | None, here: str | None) -> Cell:
    if owner is None:
        return plain("–", Tone.DIM)  # no node holds it: the next message's node takes it
    if owner == here:
        return plain(THIS_NODE, Tone.DIM)
    return safe(owner, 60, Tone.STRONG)


def session_row(view: SessionView, now: float, here: str | None = None) -> Cells:
    """here: this gateway's node (None on SQLite)."""
    elsewhere = view.owner is not None and here is not None and view.owner != here
    state = (
        plain(REMOTE, Tone.DIM)
        if elsewhere
        else plain(view.state, STATE_TONES.get(view.state, Tone.PLAIN))
    )
    return (
        plain(view.session_id),
        safe(where(view.platform, view.chat_id, view.thread_id, view.user_name), 120),
        state,
        owner_cell(view.owner, here),
        plain("–" if view.generation is None else view.generation),
        plain(duration(view.turn_age)),
        plain(view.queued or "", Tone.WARN if view.queued else Tone.PLAIN),
        plain(duration(now - view.last_activity, coarse=True) if view.last_activity else "–"),
    )


ROW_KEYS = ("approve", "clear", "force_resume", "unsuspend")  # a recovery row's own actions


def action_keys(actions: frozenset[str]) -> str:
    """The keys of the actions that apply to a row, in a fixed order: "a c f"."""
    return " ".join(BY_NAME[name].keys for name in ROW_KEYS if name in actions) or "–"


def candidate_row(
    view: CandidateView,
    marked: bool,
    actions: frozenset[str],
    verdict: str,
    why: str,
    tail_age: float | None,
) -> Cells:
    """verdict and why: the candidate in words (console.recovery_text); tail_age: the age of
    its last transcript row at this refresh."""
    return (
        plain("✓" if marked else " ", Tone.STRONG),
        plain(view.session_id),
        safe(display_key(view.key, view.user_name), 120),
        plain(verdict, VERDICT_TONES.get(verdict, Tone.PLAIN)),
        plain(view.state, STATE_TONES.get(view.state, Tone.PLAIN)),
        plain(action_keys(actions), Tone.STRONG),
        plain(duration(tail_age)),
        safe(view.reason or "–", 60),
        plain(view.attempts),
        safe(why, 400),
    )


def process_row(view: ProcessView) -> Cells:
    flags = []
    if view.notify_on_complete:
        flags.append("notify")
    if view.watch_patterns:
        flags.append("watch" if view.watch_status == "watching" else "watch off")
    if view.consumed:
        flags.append("consumed")
    if view.detached:
        flags.append("adopted")
    state: str = view.state
    if view.exit_code is not None:
        state = f"exit {view.exit_code}"
    return (
        plain(view.process_id),
        plain("–" if view.session_id is None else view.session_id),
        plain(state, STATE_TONES.get(view.state, Tone.PLAIN)),
        plain(duration(view.age)),
        plain("–" if view.cpu_percent is None else f"{view.cpu_percent:.0f}"),
        plain(size(view.rss)),
        safe(view.command, 300),
        safe(" ".join(flags) or "–", 40),
        safe(view.last_line, 300),
    )


def timer_row(view: NotifierView, conversation: str) -> Cells:
    return (
        plain(view.session_id),
        safe(conversation, 120),
        plain(view.generation),
        plain(duration(view.interval)),
        plain(duration(view.next_fire_in)),
        plain(view.sent),
    )


NODE_COLUMNS = (
    Column("node", "Node", 22, flex=1),  # room for "(this node)" after a short id
    Column("host", "Host", 12, drop=2),  # the default node id holds the host already
    Column("pid", "PID", 7, drop=3),
    Column("state", "State", 8),
    Column("heartbeat", "Heartbeat", 9),
    Column("sessions", "Sessions", 8),
    Column("intake", "Intake", 8, drop=1, flex=1),
    Column("up", "Up", 7, drop=4),
)
NODE_TONES = {
    NodeStatus.RUNNING: Tone.GOOD,
    NodeStatus.DRAINING: Tone.WARN,
    NodeStatus.LAPSED: Tone.ALARM,
    NodeStatus.STOPPED: Tone.DIM,
}


def node_row(view: NodeView, now: float, here: str | None) -> Cells:
    """now: the snapshot's durable time; every age is computed from it and the stored times."""
    mine = view.node_id == here
    name = clean(view.node_id, 80) + (f" ({THIS_NODE})" if mine else "")
    up = None if view.state is NodeStatus.STOPPED else now - view.started_at
    return (
        Cell(name, Tone.STRONG if mine else Tone.PLAIN),
        safe(view.host, 80),
        plain(view.pid),
        plain(view.state, NODE_TONES.get(view.state, Tone.PLAIN)),
        plain(duration(max(0.0, now - view.heartbeat_at)) + " ago"),
        plain(view.sessions),
        safe(", ".join(view.intake) or "–", 60),
        plain(duration(up)),
    )


AUDIT_COLUMNS = (
    Column("id", "#", 5),
    Column("when", "When", 11, drop=1),
    Column("actor", "Who", 10, drop=2),
    Column("action", "Action", 13),
    Column("targets", "Targets", 14, drop=3),
    Column("outcome", "Outcome", 8),
    Column("detail", "Reason / detail", 20, flex=1),
)


def audit_row(entry: AuditEntry, now: float) -> Cells:
    return (
        plain(entry.id),
        plain(duration(now - entry.at) + " ago"),
        safe(entry.actor, 10),
        plain(entry.action),
        safe(",".join(entry.targets) or "–", 80),
        plain(entry.outcome, Tone.GOOD if entry.outcome == "ok" else Tone.ALARM),
        safe(" | ".join(x for x in (entry.reason, entry.detail) if x), 400),
    )
