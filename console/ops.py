"""Scripting over the control socket: status, recovery, quiet, resume-intake, drain, restart.

A readable table by default, stable JSON with --json. An action the gateway refused exits 1
with its reason on stderr; an unreachable gateway exits 1 with one line saying so.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from console.attach import ControlClient, ControlError
from console.cli_tables import print_lines, print_table
from console.durations import duration
from console.recovery_text import explanation, loop_guard_lines, verdict_label
from console.rows import display_key
from console.status_text import drain_lines, previous_run_line
from console.words import plural
from gateway_core.model import SessionKey
from gateway_core.snapshot import CandidateView, Snapshot, tail_age
from gateway_core.wire import decode_result, decode_snapshot, encode

EXIT_OK = 0
EXIT_REFUSED = 1
COUNTS_ONLY = {"limit": 0}  # status and recovery need counts and candidates, no session rows


def status_json(snap: Snapshot) -> dict[str, Any]:
    drain = snap.drain
    return {
        "state": snap.state,
        "run_id": snap.run_id,
        "uptime_s": round(snap.uptime, 3),
        "counts": encode(snap.counts),
        "loop_guard_tripped": snap.loop_guard_tripped,
        "drain": None
        if drain is None
        else {
            "phase": drain.phase,
            "total": drain.total,
            "finished": drain.finished,
            "running": list(drain.running),
            "interrupted": list(drain.interrupted),
            "seconds_left": round(drain.seconds_left, 3),
        },
    }


def candidate_json(view: CandidateView, now: float) -> dict[str, Any]:
    try:
        key = SessionKey.parse(view.key)
        session = {"platform": key.platform, "chat": key.chat_id, "thread": key.thread_id}
    except ValueError:
        session = {"platform": None, "chat": None, "thread": None, "key": view.key}
    return {
        "id": view.session_id,
        "session": session,
        "user": view.user_name,
        "verdict": view.verdict,
        "state": view.state,
        "action": view.action,
        "reason": view.reason,
        "explanation": view.explanation,
        "tail_age_s": None if (age := tail_age(view, now)) is None else round(age, 3),
        "attempts": view.attempts,
        # How each interrupted tool call was settled from its job's evidence, and what the
        # user was told about the request (held, cleared, waiting), if anything.
        "settled": list(view.settled),
        "told": view.told,
        # On several nodes: the node that owns it, the one to act on it through (else null).
        "owner": view.owner,
    }


async def run_op(
    socket_path: Path, op: str, *, as_json: bool, targets: list[str], reason: str | None,
    timeout: float | None,
) -> int:  # fmt: skip
    try:
        client = await ControlClient.connect(socket_path)
    except ControlError as error:
        print(f"switchboard: {error}", file=sys.stderr)
        return EXIT_REFUSED
    try:
        if op == "status":
            snap = decode_snapshot(await client.request("snapshot", sessions=COUNTS_ONLY))
            _print_status(snap, as_json)
            return EXIT_OK
        if op == "recovery-list":
            snap = decode_snapshot(await client.request("snapshot", sessions=COUNTS_ONLY))
            _print_candidates(snap, as_json)
            return EXIT_OK
        action = op
        result = decode_result(
            await client.request(
                "act", action=action, targets=targets, reason=reason, timeout=timeout
            )
        )
        if as_json:
            print(json.dumps({"ok": result.ok, "message": result.message}))
        elif result.ok:
            print(result.message)
        if not result.ok:
            print(f"switchboard: {action} refused: {result.message}", file=sys.stderr)
            return EXIT_REFUSED
        return EXIT_OK
    except ControlError as error:
        print(f"switchboard: {error}", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        await client.close()


def _print_status(snap: Snapshot, as_json: bool) -> None:
    if as_json:
        print(json.dumps(status_json(snap), sort_keys=True))
        return
    title = f"switchboard: {snap.state}, run #{snap.run_id}, up {duration(snap.uptime)}"
    rows = [(key, str(value)) for key, value in snap.counts.rows()]
    print_table(title, ("count", "value"), rows, right=("value",))
    lines = []
    if snap.drain is not None:
        lines += [f"Drain: {snap.drain.phase}", *drain_lines(snap.drain).splitlines()]
    elif snap.previous_run is not None:
        lines.append(
            f"Previous run (#{snap.previous_run.run_id}): "
            + previous_run_line(snap.previous_run, snap.taken_at)
        )
    if snap.loop_guard is not None:
        lines += loop_guard_lines(snap.loop_guard, snap.taken_at)
    print_lines(lines)


def _print_candidates(snap: Snapshot, as_json: bool) -> None:
    candidates = sorted(snap.candidates, key=lambda c: c.session_id)
    if as_json:
        print(json.dumps([candidate_json(c, snap.taken_at) for c in candidates], sort_keys=True))
        return
    here = snap.node_id  # several nodes: whose each candidate is (alone: all ours, no column)
    headers: tuple[str, ...] = ("id", "session", "verdict", "state", "reason", "tail age")
    headers += ("node", "explanation") if here is not None else ("explanation",)
    rows = []
    for c in candidates:
        row = [
            str(c.session_id),
            display_key(c.key, c.user_name),
            verdict_label(c),
            c.state,
            c.reason or "-",
            duration(tail_age(c, snap.taken_at)),
        ]
        if here is not None:
            row.append(_owner(c.owner, here))
        rows.append([*row, explanation(c)])
    print_table(plural(len(candidates), "recovery candidate"), headers, rows)


def _owner(owner: str | None, here: str) -> str:
    return "-" if owner is None else ("this node" if owner == here else owner)
