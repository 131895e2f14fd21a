"""SIGKILL a real gateway process in the middle of turns, start it again, and check the users:
nothing they sent is lost (it is answered, or its session is a recovery candidate, or its reply
is an 'unknown' outbox row) and no reply is sent twice. Each case kills a run with traffic at
a different moment, restarts the gateway idle on the same state, lets it recover and deliver
what it owes, stops it with SIGTERM, and then compares the journal with the store.

The loopback journal is the users' view (every message in and out, flushed at once, so it
survives the kill); the store is the gateway's. One thing the loopback platform cannot do is
redeliver an update the gateway never acknowledged: a message journaled as sent but not yet
committed to the inbox when the process died is gone with the process (a real platform such
as Telegram would hand it over again). Only a chat's last message can be in that state, since
each user waits for a reply before writing again; such messages are counted, not failed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pytest

from gateway_core.model import Message, MessageKind, OutboxItem, OutboxStatus, Role
from gateway_core.store import DATABASE_NAME, Store

REPO = Path(__file__).resolve().parents[1]
USERS = 4
MESSAGES = 60  # per user: far more than any threshold below, so turns are in flight
READY_WITHIN = 20.0
TRAFFIC_WITHIN = 30.0
SETTLE_WITHIN = 15.0
EXIT_WITHIN = 15.0

Entry = dict[str, Any]


@dataclass
class Files:
    state_dir: Path
    journal: Path
    log: Path

    @property
    def db(self) -> Path:
        return self.state_dir / DATABASE_NAME


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, by: int = 1) -> None:
        self.stats[name] = self.stats.get(name, 0) + by


# -- files ------------------------------------------------------------------------------------


def _read_journal(path: Path, *, finished: bool = True) -> list[Entry]:
    """The journal's entries. While its writer runs, a last line without its newline may be
    half written and is left out; once every writer is gone there must be none."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    *lines, rest = text.split("\n")
    assert not (finished and rest), f"{path}: torn last line {rest!r}"
    entries = []
    for number, line in enumerate(lines, 1):
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"{path}:{number}: torn journal line {line!r}") from None
    return entries


def _count(path: Path, direction: str) -> int:
    entries = _read_journal(path, finished=False)
    return sum(1 for entry in entries if entry["dir"] == direction)


def _tail(path: Path, lines: int = 25) -> str:
    if not path.exists():
        return f"({path.name} does not exist)"
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def _open_log(path: Path) -> TextIO:
    return path.open("a", encoding="utf-8")


def _query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """A read from a plain connection (the gateway process may be writing meanwhile)."""
    with sqlite3.connect(db, timeout=5.0) as connection:
        rows = connection.execute(sql).fetchall()
    connection.close()
    return rows


_BUSY_SQL = (
    "SELECT (SELECT count(*) FROM inbox WHERE status = 'new'),"
    " (SELECT count(*) FROM sessions WHERE active_turn IS NOT NULL),"
    " (SELECT count(*) FROM outbox WHERE status = 'pending'),"
    " (SELECT count(*) FROM outbox WHERE status = 'sending'),"
    " (SELECT count(*) FROM recovery WHERE state IN ('pending', 'resuming'))"
)
_BUSY_NAMES = ("inbox_new", "turns_running", "outbox_pending", "outbox_sending", "resumes_owed")


def _busy(db: Path) -> dict[str, int]:
    """What the gateway still has to do: all zero once it is quiet."""
    if not db.exists():
        return dict.fromkeys(_BUSY_NAMES, -1)
    return dict(zip(_BUSY_NAMES, _query(db, _BUSY_SQL)[0], strict=True))


_DUMP = (
    ("runs (id, clean, stopped_at, candidates)",
     "SELECT id, clean, stopped_at, candidates FROM runs"),
    ("recovery (session, state, reason, verdict)",
     "SELECT session_id, state, reason, last_verdict FROM recovery WHERE state != 'none'"),
    ("inbox not done (id, session, payload, status)",
     "SELECT id, session_key, payload, status FROM inbox WHERE status != 'done'"),
    ("outbox (id, session, generation, status, content)",
     "SELECT id, session_id, generation, status, content FROM outbox"),
    ("last transcript rows (session, seq, role, kind, generation, content)",
     "SELECT * FROM (SELECT id, session_id, seq, role, kind, generation, substr(content, 1, 60)"
     " FROM messages ORDER BY id DESC LIMIT 40) ORDER BY id"),
)  # fmt: skip


def _dump_store(db: Path) -> str:
    if not db.exists():
        return "(no database)"
    parts = []
    for title, sql in _DUMP:
        parts.append(f"{title}:")
        parts.extend(f"  {row}" for row in _query(db, sql))
    return "\n".join(parts)


# -- processes --------------------------------------------------------------------------------


async def _poll(condition: Callable[[], bool], within: float, every: float = 0.05) -> bool:
    """True once condition() holds; False after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(every)
    return True


async def _wait_idle(process: asyncio.subprocess.Process, within: float) -> bool:
    """True once the idle gateway printed IDLE (everything its boot queued is done)."""
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), within)
    except TimeoutError:
        return False
    return line == b"IDLE\n"


async def _start(files: Files, *options: str) -> asyncio.subprocess.Process:
    """Start the gateway module as a real process and wait (bounded) for its READY line."""
    log = _open_log(files.log)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.crash_gateway",
            "--state-dir",
            str(files.state_dir),
            "--journal",
            str(files.journal),
            *options,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
    finally:
        log.close()
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), READY_WITHIN)
    except TimeoutError:
        line = b"(nothing within the bound)"
    if line != b"READY\n":
        await _reap(process)
        raise AssertionError(f"no READY from the gateway: {line!r}\n{_tail(files.log)}")
    return process


async def _reap(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
        await asyncio.wait_for(process.wait(), EXIT_WITHIN)


# -- the checks -------------------------------------------------------------------------------


def _is_answer(message: Message) -> bool:
    return message.role == Role.ASSISTANT and not message.tool_calls


async def _check(store: Store, files: Files, journal: list[Entry], found: Findings) -> None:
    problems = found.problems
    inbound = [e for e in journal if e["dir"] == "in"]
    out = [e for e in journal if e["dir"] == "out"]
    chats = sorted({e["chat"] for e in inbound})

    # 1. Every message a user sent reached the inbox and was processed.
    inbox = dict(
        (row[0], row[1]) for row in _query(files.db, "SELECT update_id, status FROM inbox")
    )
    open_items = await store.inbox.open_items()
    if open_items:
        problems.append(f"inbox items never processed: {[i.payload for i in open_items]}")
    last_in = {e["chat"]: e["update_id"] for e in inbound}
    unacked = set()
    for entry in inbound:
        status = inbox.get(entry["update_id"])
        if status is None and last_in[entry["chat"]] == entry["update_id"]:
            unacked.add(entry["update_id"])  # died before the inbox commit (see the top)
        elif status != "done":
            problems.append(f"inbound {entry} has inbox status {status!r}")
    found.count("unacknowledged_at_kill", len(unacked))

    outbox: dict[tuple[int, int], OutboxItem] = {}
    by_status: dict[OutboxStatus, list[OutboxItem]] = {}
    for status in OutboxStatus:
        by_status[status] = await store.outbox.by_status(status, limit=100_000)
        for item in by_status[status]:
            outbox[(item.session_id, item.generation)] = item
    for status in (OutboxStatus.PENDING, OutboxStatus.SENDING, OutboxStatus.FAILED):
        if by_status[status]:
            problems.append(f"outbox rows left {status}: {by_status[status]}")
    found.count("outbox_unknown", len(by_status[OutboxStatus.UNKNOWN]))
    candidates = {session.id for _, session in await store.recovery.candidates()}

    sessions = {s.key.chat_id: s for s in await store.sessions.list()}
    for chat in chats:
        session = sessions.get(chat)
        if session is None:
            problems.append(f"chat {chat}: no session")
            continue
        rows = await store.transcript.all(session.id)

        # 2. The transcript holds each accepted message exactly once, in order.
        said = [e["text"] for e in inbound if e["chat"] == chat and e["update_id"] not in unacked]
        users = [m for m in rows if m.role == Role.USER and m.kind == MessageKind.TEXT]
        stored = [m.content for m in users]
        if stored != said:
            problems.append(f"chat {chat}: transcript user messages {stored} != journal {said}")

        # 3. Each is answered (and that answer sent or 'unknown'), or the session is a candidate.
        asked = {m.seq for m in users}
        for index, row in enumerate(rows):
            if row.seq not in asked:
                continue
            later = rows[index + 1 :]
            reply = None
            for message in later:
                if message.role == Role.USER and message.kind == MessageKind.TEXT:
                    break
                if _is_answer(message):
                    reply = message
                    break
            if reply is None:
                if session.id in candidates:
                    found.count("left_as_candidate")
                else:
                    problems.append(f"chat {chat}: #{row.seq} {row.content!r} unanswered")
                continue
            owed = outbox.get((session.id, reply.generation))
            status = None if owed is None else owed.status
            if status not in ("sent", "unknown"):
                problems.append(f"chat {chat}: answer #{reply.seq} has outbox status {status!r}")
            if reply.content.startswith("Back after a restart"):
                found.count("resumed_turns")

        # 4. No reply twice: the chat shows exactly the sent rows, plus at most the unknown ones.
        shown = Counter(e["text"] for e in out if e["chat"] == chat)
        for text, times in shown.items():
            if text.startswith("You said: ") and times > 1:
                problems.append(f"chat {chat}: {text!r} shown {times} times")
        sent = Counter(
            i.content for i in by_status[OutboxStatus.SENT] if i.session_id == session.id
        )
        unknown = Counter(
            i.content for i in by_status[OutboxStatus.UNKNOWN] if i.session_id == session.id
        )
        if sent - shown:
            problems.append(f"chat {chat}: marked sent but never shown: {dict(sent - shown)}")
        if (shown - sent) - unknown:
            extra = dict((shown - sent) - unknown)
            problems.append(f"chat {chat}: shown more often than sent (doubled?): {extra}")
        found.count("unknown_but_shown", sum(((shown - sent) & unknown).values()))

    strays = {e["chat"] for e in out} - set(chats)
    if strays:
        problems.append(f"replies to chats that never wrote: {strays}")


# -- the test ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("direction", "threshold"), [("out", 5), ("in", 15), ("out", 30)], ids=["out5", "in15", "out30"]
)
async def test_sigkill_mid_turn_loses_nothing_and_doubles_nothing(
    tmp_path: Path, direction: str, threshold: int
) -> None:
    files = Files(tmp_path / "state", tmp_path / "journal.jsonl", tmp_path / "gateway.log")
    found = Findings()
    first = second = None
    try:
        # Run 1: traffic, killed with SIGKILL as soon as (2 ms polls) the journal shows the
        # threshold's reply or message: a turn mid-think, a reply sent but not confirmed, a
        # message stored but not started, an answer not yet sent, ... vary from run to run.
        first = await _start(
            files,
            *("--users", str(USERS), "--messages", str(MESSAGES)),
            *("--seed", str(threshold)),
        )
        enough = await _poll(
            lambda: _count(files.journal, direction) >= threshold, TRAFFIC_WITHIN, every=0.002
        )
        seen = _count(files.journal, direction)
        assert enough, f"only {seen} journal lines {direction!r}\n{_tail(files.log)}"
        assert first.returncode is None, f"the gateway exited early\n{_tail(files.log)}"
        os.kill(first.pid, signal.SIGKILL)
        assert await asyncio.wait_for(first.wait(), EXIT_WITHIN) == -signal.SIGKILL
        killed_at = len(_read_journal(files.journal))
        found.stats.update({f"at_kill_{k}": v for k, v in _busy(files.db).items()})

        # Run 2: no traffic; the boot recovers and delivers what is owed, then a clean stop.
        second = await _start(files, "--no-traffic")
        settled_in_time = await _wait_idle(second, SETTLE_WITHIN)
        os.kill(second.pid, signal.SIGTERM)
        code = await asyncio.wait_for(second.wait(), EXIT_WITHIN)
        assert code == 0, f"SIGTERM exit code {code}\n{_tail(files.log)}"
    finally:
        for process in (first, second):
            if process is not None:
                await _reap(process)

    journal = _read_journal(files.journal)
    found.stats["replies_before_kill"] = sum(1 for e in journal[:killed_at] if e["dir"] == "out")
    found.stats["replies_after_restart"] = sum(1 for e in journal[killed_at:] if e["dir"] == "out")
    if not settled_in_time:
        found.problems.append(f"the restarted gateway never went quiet: {_busy(files.db)}")
    if any(e["dir"] == "in" for e in journal[killed_at:]):
        found.problems.append("the restarted run received messages; it was started idle")

    async with await Store.open(files.db) as store:
        await _check(store, files, journal, found)
        runs = await store.runs.recent()
    if len(runs) != 2:
        found.problems.append(f"expected 2 runs, got {runs}")
    else:
        restarted, killed = runs
        found.stats["candidates_at_restart"] = restarted.candidates
        if restarted.clean is not True:
            found.problems.append(f"the restarted run did not stop clean: {restarted}")
        if killed.clean is not None or killed.stopped_at is not None:
            found.problems.append(f"the killed run looks stopped: {killed}")

    print(f"\n[kill after {threshold} {direction!r}] {found.stats}")
    assert not found.problems, (
        "\n".join(found.problems)
        + f"\n\nstats: {found.stats}\n\njournal tail:\n{_tail(files.journal)}"
        + f"\n\nstore:\n{_dump_store(files.db)}\n\ngateway log:\n{_tail(files.log)}"
    )
