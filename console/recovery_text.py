"""A recovery candidate in words, for the recovery tab, its dialogs and `recovery list`.

One place says what a candidate's verdict, state and explanation are, so a suspended session
reads "suspended (operator) — never resumed automatically" everywhere instead of Python's
None. `detail_fields` lists every field of the view, the known ones first in plain words and
any others (the gateway may add explanations) after them, so new evidence shows up without
a change here.
"""

from __future__ import annotations

import dataclasses

from console.durations import duration, spoken
from console.rows import display_key
from console.words import plural
from gateway_core.model import RecoveryState
from gateway_core.snapshot import NOT_DECIDED, CandidateView, LoopGuardView

SUSPENDED = RecoveryState.SUSPENDED
_KNOWN = {
    "session_id",
    "key",
    "user_name",
    "state",
    "reason",
    "verdict",
    "action",
    "explanation",
    "tail_age",
    "tail_at",
    "attempts",
    "marked_at",
    "settled",
    "told",
}


def verdict_label(view: CandidateView) -> str:
    if view.state is SUSPENDED:
        return SUSPENDED.value  # the boot skips it: no verdict is ever recorded
    return view.verdict or NOT_DECIDED


def explanation(view: CandidateView) -> str:
    if view.state is SUSPENDED:
        return f"suspended ({view.reason or 'operator'}) — never resumed automatically"
    return view.explanation or "marked during this run: decided at the next start"


def next_step(view: CandidateView) -> str:
    """What happens to it next, and who can change that."""
    if view.state is SUSPENDED:
        return "nothing until an operator unsuspends it"
    if view.state is RecoveryState.HELD:
        return "held for an operator: approve, clear or force-resume"
    if view.state is RecoveryState.RESUMING:
        return f"a resume turn runs (attempt {view.attempts})"
    if view.action == "wait":
        return "waits for the user's next message"
    if view.action == "resume":
        return "a resume turn is queued"
    return "decided at the next start"


def describe(view: CandidateView) -> str:
    """One line naming it, for a confirmation's target list."""
    return f"{view.session_id}: {display_key(view.key, view.user_name)} ({verdict_label(view)})"


def detail_fields(view: CandidateView) -> list[tuple[str, str]]:
    """(label, value) lines for the detail pane."""
    fields = [
        ("Conversation", display_key(view.key, view.user_name)),
        ("Verdict", verdict_label(view)),
        ("Why", explanation(view)),
        ("Next", next_step(view)),
        ("Marked", view.reason or "–"),
    ]
    if view.attempts:
        fields.append(("Resume attempts", str(view.attempts)))
    if view.settled:
        fields.append(("Tool calls settled", "; ".join(view.settled)))
    if view.told:
        fields.append(("User told", view.told))
    for field in dataclasses.fields(view):
        value = getattr(view, field.name)
        if field.name not in _KNOWN and value not in (None, "", (), 0):
            fields.append((field.name.replace("_", " ").capitalize(), str(value)))
    return fields


def loop_guard_lines(guard: LoopGuardView, now: float) -> list[str]:
    """The restart-loop guard in words: what tripped it, what it means, how to leave it."""
    if not guard.tripped:
        return []
    if guard.reset_by is not None:
        when = "" if guard.reset_at is None else f" {duration(now - guard.reset_at)} ago"
        return [f"Restart-loop guard: reset by {guard.reset_by}{when}."]
    ages = [f"{duration(now - at)} ago" for at in guard.boots]
    when = ", ".join(ages[:-1]) + f" and {ages[-1]}" if len(ages) > 1 else "".join(ages)
    held = plural(len(guard.held), "turn")
    return [
        f"Restart-loop guard tripped: {plural(len(guard.boots), 'boot')} with recovery "
        f"candidates, each within {spoken(guard.window)} of the one before ({when}); "
        f"{guard.needed} trip it.",
        f"It held back {held} that would have resumed, in case resuming is what crashes "
        "the gateway.",
        "To leave it: approve the held rows one by one (a), or reset the guard (r): what it "
        "held back resumes now, once each. Both are audited.",
    ]


def loop_guard_summary(guard: LoopGuardView) -> list[str]:
    """The same, in two lines for the recovery tab (the overview has the whole story)."""
    if not guard.active:
        return []
    return [
        f"Restart-loop guard: {plural(len(guard.boots), 'boot')} with recovery candidates, "
        f"each within {spoken(guard.window)} of the one before; it held back "
        f"{plural(len(guard.held), 'turn')} that would have resumed.",
        "Leave it: approve held rows (a), or reset the guard (r) to resume what it held "
        "back. More on 1 Overview.",
    ]
