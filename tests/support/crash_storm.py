"""A crash storm: a real `switchboard run` SIGKILLed at seeded random moments while several
Telegram conversations talk to it, then an operator who approves what was held.

    report = await run_storm(tmp_path, StormPlan(kills=8, seed=1))
    assert report.lost == report.duplicated == report.phantom == 0

The fake Bot API runs in this process (it keeps unconfirmed updates and hands them over again
after a restart, as Telegram does); the gateway is the real service command with the scripted
agent. The conversations, each waiting for its answer before writing again:

    fast    quick echoes                                 "msg 3 #f3"
    slow    long turns whose resume works again          "work 2 #s1"
    tools   a foreground terminal command, or 3 steps    'tool terminal {...} #t2', "steps 3 #t3"
    waiter  one request, and nothing more until it is answered

Every request carries a #tag that the scripted agent repeats in its answer, so each answer is
matched to its request. After the last kill the gateway runs on undisturbed; the operator
approves every held candidate over the control socket and resends, after checking the chat,
any reply whose outcome the gateway could not know (killed mid-send). Then every request
must have exactly one answer, and nothing may have been said that nobody asked for.

Used by tests/test_crash_storm.py (a short storm) and bench/crash_storm.py (300 kills).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import sqlite3
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from console.attach import ControlClient, SocketBackend
from tests.support.fake_bot_api import DEFAULT_TOKEN, FakeBotAPI

REPO = Path(__file__).resolve().parents[2]
FAST, SLOW, TOOLS, WAITER = 7101, 7102, 7103, 7104
CHATS = (FAST, SLOW, TOOLS, WAITER)
READY_WITHIN = 60.0  # a loaded 2-core machine can take long to import aiogram
NOTICE = "⚠️"  # what the gateway's own notices to users start with


@dataclass(frozen=True)
class StormPlan:
    kills: int = 8
    seed: int = 0
    min_gap: float = 0.3  # seconds from READY to the kill
    max_gap: float = 2.5
    settle_within: float = 60.0  # after the storm: every request answered by then
    # After each restart an on-call operator approves what is held with this probability
    # (seeded); what is still held after the storm is approved at the end in any case.
    approve_during: float = 0.5


@dataclass
class StormReport:
    kills: int = 0
    sent: int = 0
    answered_once: int = 0
    lost: int = 0
    duplicated: int = 0
    phantom: int = 0
    held: int = 0  # approvals: held candidates the operator approved (during and after)
    approved_during: int = 0  # ... of which during the storm (the resume may be killed again)
    held_notices: int = 0  # "an operator will review it" messages users got
    unknown_outcome: int = 0  # replies caught mid-send by a kill
    unknown_delivered: int = 0  # ... of which the user had in fact received
    resent: int = 0  # ... and the ones the operator resent
    resumed: int = 0  # answers that came from a resumed turn
    slowest_start_s: float = 0.0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "problems"}


def _tag_pattern(tag: str) -> re.Pattern[str]:
    return re.compile(re.escape(tag) + r"(?![0-9])")


class Users:
    """The four conversations, driven against the fake; each waits for its answer."""

    def __init__(self, fake: FakeBotAPI, rng: random.Random) -> None:
        self.fake = fake
        self.rng = rng
        self.sent: dict[int, list[str]] = {chat: [] for chat in CHATS}  # tags, in order
        self.stop = asyncio.Event()

    def answers(self, chat: int, tag: str) -> list[str]:
        pattern = _tag_pattern(tag)
        return [t for t in self.fake.sent(chat) if not t.startswith(NOTICE) and pattern.search(t)]

    def _answered(self, chat: int, tag: str) -> bool:
        return bool(self.answers(chat, tag))

    def _request(self, chat: int, n: int) -> tuple[str, str]:
        if chat == FAST:
            tag = f"#f{n}"
            return tag, f"msg {n} {tag}"
        if chat in (SLOW, WAITER):
            tag = f"#{'s' if chat == SLOW else 'w'}{n}"
            return tag, f"work {self.rng.choice((1, 2, 3))} {tag}"
        tag = f"#t{n}"
        if n % 2 == 0:
            command = json.dumps({"command": f"sleep 0.4; echo step {n}"})
            return tag, f"tool terminal {command} {tag}"
        return tag, f"steps 3 {tag}"

    async def talk(self, chat: int) -> None:
        n = 0
        while not self.stop.is_set():
            tag, text = self._request(chat, n)
            self.sent[chat].append(tag)
            self.fake.push_text(chat, text)
            # A held request waits for the operator (re-checked at every request to the fake).
            await self.fake.wait_until(partial(self._answered, chat, tag), timeout=3600)
            n += 1
            if chat == WAITER:
                return  # never writes again


class Service:
    """`switchboard run -c CONFIG` as a real process; READY is its "ready" JSON log line."""

    def __init__(self, config: Path, env: dict[str, str], log: Path) -> None:
        self.config, self.env, self.log = config, env, log
        self.process: asyncio.subprocess.Process | None = None
        self.boots = 0
        self.slowest_start = 0.0  # seconds from exec to READY, the slowest boot

    async def start(self) -> None:
        self.boots += 1
        with self.log.open("ab") as log:
            log.write(f"===== boot {self.boots} =====\n".encode())
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "console.cli", "run", "-c", str(self.config),
                cwd=REPO, env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )  # fmt: skip
        assert self.process.stdout is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_WITHIN
        began = loop.time()
        while True:
            left = deadline - loop.time()
            try:
                line = await asyncio.wait_for(self.process.stdout.readline(), max(left, 0.01))
            except TimeoutError:
                raise AssertionError(
                    f"boot {self.boots}: no READY within {READY_WITHIN:g} s\n{self.tail()}"
                ) from None
            if not line:
                raise AssertionError(f"the gateway exited before READY\n{self.tail()}")
            with self.log.open("ab") as log:
                log.write(line)
            if json.loads(line).get("event") == "ready":
                self.slowest_start = max(self.slowest_start, loop.time() - began)
                break
        # Keep its stdout drained (and logged) so the gateway never blocks on a full pipe.
        self._drain = asyncio.ensure_future(self._copy_stdout(self.process))

    async def _copy_stdout(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            with self.log.open("ab") as log:
                log.write(line)

    async def sigkill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        await self.process.wait()
        await asyncio.gather(self._drain, return_exceptions=True)

    async def sigterm(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), 30)
        await asyncio.gather(self._drain, return_exceptions=True)
        return code

    async def reap(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    def tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def write_storm_config(tmp_path: Path, fake: FakeBotAPI) -> Path:
    state = tmp_path / "state"
    path = tmp_path / "storm.toml"
    path.write_text(
        "\n".join(
            [
                "[gateway]",
                f'state_dir = "{state}"',
                "drain_timeout = 5",
                "grace = 0.5",
                "sample_interval = 0",
                "[telegram]",
                f'api_base = "{fake.base_url}"',
                f"allowed_users = [{', '.join(str(c) for c in CHATS)}]",
                "poll_timeout = 1",
                "[agent]",
                'kind = "scripted"',
                "[notifier]",
                "interval = 0",
            ]
        )
        + "\n"
    )
    return path


def _query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5.0)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


async def _approve_held(socket: Path, report: StormReport) -> int:
    """Approve every held candidate over the control socket; returns how many."""
    client = await ControlClient.connect(socket)
    approved = 0
    try:
        backend = SocketBackend(client)
        snapshot = await backend.snapshot()
        for candidate in snapshot.candidates:
            if candidate.state == "held":
                result = await backend.act("approve", [str(candidate.session_id)])
                if not result.ok:
                    report.problems.append(f"approve {candidate.session_id}: {result.message}")
                approved += 1
    finally:
        await client.close()
    report.held += approved
    return approved


async def _operator(socket: Path, fake: FakeBotAPI, db: Path, report: StormReport) -> None:
    """Approve every held candidate; resend the unknown-outcome replies not in the chat."""
    await _approve_held(socket, report)
    client = await ControlClient.connect(socket)
    try:
        backend = SocketBackend(client)
        unknown = _query(db, "SELECT o.id, s.chat_id, o.content FROM outbox AS o"
                             " JOIN sessions AS s ON s.id = o.session_id"
                             " WHERE o.status = 'unknown'")  # fmt: skip
        for outbox_id, chat, content in unknown:
            report.unknown_outcome += 1
            if content in fake.sent(int(chat)):
                report.unknown_delivered += 1
                continue
            result = await backend.act("resend", [str(outbox_id)])
            if not result.ok:
                report.problems.append(f"resend {outbox_id}: {result.message}")
            report.resent += 1
    finally:
        await client.close()


def _quiet(db: Path) -> bool:
    """Nothing left to do but what waits for the operator."""
    busy = _query(
        db,
        "SELECT (SELECT count(*) FROM inbox WHERE status = 'new')"
        " + (SELECT count(*) FROM turns WHERE outcome IS NULL)"
        " + (SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending'))"
        " + (SELECT count(*) FROM recovery WHERE state IN ('pending', 'resuming'))",
    )
    return int(busy[0][0]) == 0


async def _settle(db: Path, fake: FakeBotAPI, within: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    quiet_polls = 0
    while loop.time() < deadline:
        quiet_polls = quiet_polls + 1 if (not fake.pending_updates() and _quiet(db)) else 0
        if quiet_polls >= 5:
            return True
        await asyncio.sleep(0.1)
    return False


def _judge(users: Users, fake: FakeBotAPI, report: StormReport) -> None:
    known: list[re.Pattern[str]] = []
    for chat, tags in users.sent.items():
        for tag in tags:
            report.sent += 1
            known.append(_tag_pattern(tag))
            answers = users.answers(chat, tag)
            if len(answers) == 1:
                report.answered_once += 1
                report.resumed += answers[0].startswith("Back after a restart")
            elif not answers:
                report.lost += 1
                report.problems.append(f"chat {chat}: {tag} never answered")
            else:
                report.duplicated += 1
                report.problems.append(f"chat {chat}: {tag} answered {len(answers)} times")
    for chat in CHATS:
        texts = fake.sent(chat)
        report.held_notices += sum(1 for t in texts if t.startswith(NOTICE))
        for text in texts:
            if not any(p.search(text) for p in known):
                report.phantom += 1
                report.problems.append(f"chat {chat}: said unasked: {text!r}")
    notices = Counter(t for c in CHATS for t in fake.sent(c) if t.startswith(NOTICE))
    for text, times in notices.items():
        if times > 1:
            report.duplicated += 1
            report.problems.append(f"notice sent {times} times: {text!r}")


async def run_storm(tmp_path: Path, plan: StormPlan) -> StormReport:
    rng = random.Random(plan.seed)
    report = StormReport()
    began = time.monotonic()
    async with FakeBotAPI() as fake:
        config = write_storm_config(tmp_path, fake)
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "PYTHONPATH": str(REPO),
            "SWITCHBOARD_TELEGRAM_TOKEN": DEFAULT_TOKEN,
        }
        service = Service(config, env, tmp_path / "gateway.log")
        users = Users(fake, random.Random(plan.seed + 1))
        talking = [asyncio.ensure_future(users.talk(chat)) for chat in CHATS]
        db = tmp_path / "state" / "switchboard.db"
        try:
            await service.start()
            socket = tmp_path / "state" / "control.sock"
            for _ in range(plan.kills):
                await asyncio.sleep(rng.uniform(plan.min_gap, plan.max_gap))
                await service.sigkill()
                report.kills += 1
                await service.start()
                if rng.random() < plan.approve_during:
                    report.approved_during += await _approve_held(socket, report)
            users.stop.set()  # no new requests; the ones in flight still want their answers
            if not await _settle(db, fake, plan.settle_within):
                report.problems.append("the gateway never went quiet after the storm")
            await _operator(socket, fake, db, report)
            done = asyncio.gather(*talking)
            try:
                await asyncio.wait_for(asyncio.shield(done), plan.settle_within)
            except TimeoutError:
                report.problems.append("requests still unanswered after the approvals")
            await _settle(db, fake, plan.settle_within)
            code = await service.sigterm()
            if code != 0:
                report.problems.append(f"the last gateway exited {code}")
        except AssertionError as error:  # a boot that never came up: say so, judge the rest
            report.problems.append(str(error))
        finally:
            users.stop.set()
            for task in talking:
                task.cancel()
            await asyncio.gather(*talking, return_exceptions=True)
            await service.reap()
            report.slowest_start_s = round(service.slowest_start, 1)
        _judge(users, fake, report)
    report.seconds = round(time.monotonic() - began, 1)
    return report
