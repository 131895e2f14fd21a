"""Benchmark: Telegram end to end, against the loopback fake Bot API, with an instant agent.

    python bench/telegram.py                        # 200 chats, 300 updates/s, 20 s per phase
    python bench/telegram.py --seconds 5            # quicker
    python bench/telegram.py --only saturation      # one phase (handy under a profiler)
    python bench/telegram.py --fake-process both    # also with the fake in its own process
    python bench/telegram.py --intake both          # polling, then webhook, side by side
    python bench/telegram.py --intake webhook --metrics   # and /metrics scraped every second

Prints one JSON object. Targets (the Telegram issue), on the 2-core machine this project runs
on: at least 1,500 updates/s replied at saturation, and p99 update-to-reply latency under 30 ms
at 300 updates/s offered.

Each phase runs a real Gateway (SystemClock, scripted agent, notifier off) on a fresh store in
a temporary directory, with the real TelegramAdapter (aiogram, our polling loop) pointed at
tests/support/fake_bot_api.py. With `--intake webhook` the adapter registers a webhook instead
and the fake POSTs every update to the gateway's listener (telegram.webhook_listen on
loopback, `--max-connections` at once, Telegram's default 40), as Telegram does; the rest of
the path is the same. `--metrics` also serves /metrics (and the probes) on [http] listen and
scrapes it once a second during the window: `metrics_scrape` is how long a scrape took.
Chat ids are the allowed user ids (private chats). Before it is measured, every chat sends one
message and gets its reply (sessions created, lanes, delivery workers and HTTP connections
warm); that warm-up is not counted.

Latency is taken on the fake's side, both ends on time.monotonic(): from just before
push_text() queued the update until the fake logged the matching sendMessage (`Call.at` of its
call log, matched by the unique token in "You said: <token>"). It therefore includes the wait
for the next getUpdates (or the webhook POST), the intake commit, the turn, the outbox and
aiogram's send.

  fixed_rate  updates pushed on an absolute schedule (`--rate` per second, round-robin over
              the chats). `schedule_lag` is how late the pacer pushed against its slot (the
              event loop was busy): it is NOT in the latency.
  saturation  the fake keeps a bounded backlog of `--backlog` updates pushed but not yet
              answered (at most backlog/chats per chat, so no lane ever overflows its
              max_queue), refilled as replies arrive: the gateway consumes as fast as it can.
              updates_per_s counts replies the fake received within the window.

`--fake-process same` (default) runs the fake on the gateway's own event loop, so it shares
the process, the GIL and the CPU with the gateway (`fake_in_process: true` in the output);
`separate` runs the fake, and the driver that pushes updates, in a child process with its own
loop; `both` runs every phase both ways. Per phase, `writer` is the store's group-commit stats
over the measured window, `bot_api_calls` the requests the fake logged in it, and `costs`
where the time went in the gateway's process (CPU in cores, cyclic-GC share of wall time).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import multiprocessing
import os
import platform
import socket
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiogram
import aiohttp

from bench.measure import (
    Costs,
    add_gc_option,
    apply_gc_option,
    latency_summary,
    ms,
    percentile,
    writer_delta,
)
from gateway_core.adapters.telegram import TelegramAdapter
from gateway_core.adapters.telegram_webhook import WebhookRegistration
from gateway_core.agents.scripted import ScriptedAgent
from gateway_core.clock import SystemClock
from gateway_core.gateway import Gateway
from gateway_core.gc_tuning import tune_for_long_running_server
from gateway_core.service.http_surface import HttpSurface
from gateway_core.store.writer import WriterStats
from tests.support.fake_bot_api import FakeBotAPI
from tests.support.harness import make_config

REPLY_PREFIX = "You said: "
TARGET_UPDATES_PER_S = 1500
TARGET_P99_MS = 30
CHAT_BASE = 100_000  # chat id (= user id) of the first chat
DRAIN_WAIT_S = 30.0  # bound on waiting for replies still outstanding at the end of a phase
STOP_TIMEOUT_S = 5.0
WEBHOOK_SECRET = "bench-webhook-secret"
WEBHOOK_PATH = "/telegram"


@dataclass(frozen=True)
class Plan:
    phase: str  # "fixed" | "saturation"
    chats: int
    seconds: float
    rate: float
    backlog: int
    intake: str = "polling"  # "polling" | "webhook"
    max_connections: int = 40
    metrics: bool = False

    @property
    def chat_ids(self) -> list[int]:
        return [CHAT_BASE + n for n in range(self.chats)]


class ReplyCountingFake(FakeBotAPI):
    """The loopback fake, plus a per-chat count of the bot's "You said: " replies and a wake-up
    on each one. Only the saturation driver's pacing uses these; latencies come from the fake's
    own call log."""

    def __init__(self) -> None:
        # Retries of an unanswered webhook POST come quickly (nothing should need one here).
        super().__init__(webhook_retry_delay=0.1)
        self.replies: Counter[int] = Counter()
        self.replied = 0
        self.reply_seen = asyncio.Event()

    async def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        result = await super()._send_message(params)
        text = params.get("text")
        if isinstance(text, str) and text.startswith(REPLY_PREFIX):
            self.replies[self._chat_id(params)] += 1
            self.replied += 1
            self.reply_seen.set()
        return result


# -- the driver: runs next to the fake (same loop), pushes updates, reads the call log ---------


async def wait_replies(fake: ReplyCountingFake, count: int, within: float) -> bool:
    """Wait (bounded) until the fake has received `count` replies; False if time ran out."""
    try:
        await fake.wait_until(lambda: fake.replied >= count, within)
    except TimeoutError:
        return False
    return True


async def drive(
    fake: ReplyCountingFake, plan: Plan, on_warm: Callable[[], Awaitable[None]]
) -> dict[str, Any]:
    """Warm up, call on_warm(), run the phase and measure it from the fake's call log."""
    chat_ids = plan.chat_ids
    for n, chat in enumerate(chat_ids):
        fake.push_text(chat, f"w{n}")
    if not await wait_replies(fake, len(chat_ids), DRAIN_WAIT_S):
        raise RuntimeError(f"warm-up: only {fake.replied} of {len(chat_ids)} chats answered")
    warm = fake.replied
    calls_before = len(fake.calls())
    posts_before = len(fake.webhook_attempts)
    await on_warm()
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    if plan.phase == "fixed":
        pushed, extra = await _push_fixed_rate(fake, plan)
    else:
        pushed, extra = await _push_saturating(fake, plan)
    start, end = extra.pop("start"), extra.pop("end")
    drained = await wait_replies(fake, warm + len(pushed), DRAIN_WAIT_S)
    driver_cpu = time.process_time() - cpu_started
    driver_wall = time.perf_counter() - wall_started

    replied_at: dict[str, float] = {}
    methods: Counter[str] = Counter()
    for call in fake.calls()[calls_before:]:
        methods[call.method] += 1
        text = call.params.get("text") if call.method == "sendMessage" else None
        if isinstance(text, str) and text.startswith(REPLY_PREFIX):
            replied_at[text[len(REPLY_PREFIX) :]] = call.at
    answered = [token for token in pushed if token in replied_at]
    latencies = [replied_at[token] - pushed[token] for token in answered]
    result: dict[str, Any] = {"start": start, "end": end}
    if plan.phase == "fixed":
        last = max((replied_at[t] for t in answered), default=start)
        result |= {
            "offered_per_s": plan.rate,
            "offered_actual_per_s": round(len(pushed) / (end - start), 1),
            "achieved_per_s": round(len(answered) / (last - start), 1) if last > start else 0,
        }
        result |= latency_summary(latencies)
        result |= {"updates": len(answered), "unanswered": len(pushed) - len(answered)}
    else:
        in_window = [replied_at[t] for t in answered if replied_at[t] <= end]
        per_second = [0] * max(1, math.ceil(plan.seconds))
        for at in in_window:
            per_second[min(len(per_second) - 1, int(at - start))] += 1
        result |= {"updates_per_s": round(len(in_window) / (end - start), 1)}
        result |= latency_summary(latencies)
        result |= {
            "updates": len(in_window),
            "updates_incl_tail": len(answered),
            "unanswered": len(pushed) - len(answered),
            "per_second_min": min(per_second),
            "per_second_max": max(per_second),
            "backlog": plan.backlog,
        }
    result |= extra
    result["drained"] = drained
    polls = methods.get("getUpdates", 0)
    result["bot_api_calls"] = dict(sorted(methods.items()))
    if plan.intake == "webhook":
        posts = fake.webhook_attempts[posts_before:]
        result["webhook_posts"] = len(posts)
        result["webhook_posts_not_2xx"] = sum(1 for post in posts if not post.ok)
    else:
        result["updates_per_getupdates"] = round(len(pushed) / polls, 1) if polls else None
    result["driver_cpu_cores"] = round(driver_cpu / driver_wall, 2)
    return result


async def _push_fixed_rate(
    fake: ReplyCountingFake, plan: Plan
) -> tuple[dict[str, float], dict[str, Any]]:
    chat_ids = plan.chat_ids
    total = int(plan.rate * plan.seconds)
    pushed: dict[str, float] = {}
    lags: list[float] = []
    start = time.monotonic()
    for n in range(total):
        slot = start + n / plan.rate
        delay = slot - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        token = f"m{n}"
        now = time.monotonic()
        pushed[token] = now
        lags.append(now - slot)
        fake.push_text(chat_ids[n % len(chat_ids)], token)
    end = time.monotonic()
    lags.sort()
    return pushed, {
        "start": start,
        "end": end,
        "schedule_lag_p99_ms": ms(percentile(lags, 0.99)),
        "schedule_lag_max_ms": ms(lags[-1]) if lags else None,
    }


async def _push_saturating(
    fake: ReplyCountingFake, plan: Plan
) -> tuple[dict[str, float], dict[str, Any]]:
    chat_ids = plan.chat_ids
    per_chat_cap = max(1, math.ceil(plan.backlog / len(chat_ids)))
    # The warm-up message and its reply are already counted on both sides.
    pushed_by_chat = {chat: fake.replies[chat] for chat in chat_ids}
    warm = fake.replied
    pushed: dict[str, float] = {}
    cursor = 0
    start = time.monotonic()
    deadline = start + plan.seconds
    while (now := time.monotonic()) < deadline:
        fake.reply_seen.clear()
        room = plan.backlog - (len(pushed) - (fake.replied - warm))
        skipped = 0
        while room > 0 and skipped < len(chat_ids):
            chat = chat_ids[cursor]
            cursor = (cursor + 1) % len(chat_ids)
            if pushed_by_chat[chat] - fake.replies[chat] >= per_chat_cap:
                skipped += 1
                continue
            skipped = 0
            token = f"s{len(pushed)}"
            pushed[token] = time.monotonic()
            fake.push_text(chat, token)
            pushed_by_chat[chat] += 1
            room -= 1
        try:
            async with asyncio.timeout(deadline - now):
                await fake.reply_seen.wait()
        except TimeoutError:
            break
    return pushed, {"start": start, "end": deadline, "per_chat_cap": per_chat_cap}


# -- the gateway side ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class GatewayUnderTest:
    def __init__(self, directory: Path, base_url: str, token: str, plan: Plan) -> None:
        chat_ids = plan.chat_ids
        telegram: dict[str, object] = {"api_base": base_url, "allowed_users": chat_ids}
        sections: dict[str, dict[str, object]] = {"notifier": {"interval": 0}}
        webhook = None
        if plan.intake == "webhook":
            port = free_port()
            url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
            telegram |= {
                "mode": "webhook",
                "webhook_url": url,
                "webhook_listen": f"127.0.0.1:{port}",
                "webhook_max_connections": plan.max_connections,
            }
            webhook = WebhookRegistration(url, WEBHOOK_SECRET, plan.max_connections)
        if plan.metrics:
            sections["http"] = {"listen": "127.0.0.1:0"}
        config = make_config(directory / "state", telegram=telegram, **sections)
        clock = SystemClock()
        adapter = TelegramAdapter(
            token, api_base=base_url, allowed_users=chat_ids, clock=clock, webhook=webhook
        )
        self.gateway = Gateway(config, agent=ScriptedAgent(), adapters=[adapter], clock=clock)
        self.http = HttpSurface.for_config(config, self.gateway, [adapter])
        self.costs = Costs()
        self._before = WriterStats()
        self.writer: dict[str, float | int] = {}
        self._scraping: asyncio.Task[None] | None = None
        self.scrapes: list[float] = []

    async def start(self) -> None:
        if self.http is not None:
            await self.http.start()
        await self.gateway.start()

    def stats(self) -> WriterStats:
        return dataclasses.replace(self.gateway.store.writer_stats)  # a copy, as it is now

    async def begin(self) -> None:
        self._before = self.stats()
        self.costs.begin()
        if self.http is not None and self.http.metrics is not None:
            self._scraping = asyncio.ensure_future(self._scrape_every_second(self.http.base_url))

    def end(self) -> None:
        self.costs.end()
        self.writer = writer_delta(self._before, self.stats(), self.costs.wall_seconds)
        if self._scraping is not None:
            self._scraping.cancel()

    async def _scrape_every_second(self, base: str) -> None:
        """What a (demanding) Prometheus does: GET /metrics once a second."""
        async with aiohttp.ClientSession() as client:
            while True:
                began = time.perf_counter()
                async with client.get(base + "/metrics") as response:
                    await response.read()
                self.scrapes.append(time.perf_counter() - began)
                await asyncio.sleep(1.0)

    def extra(self) -> dict[str, Any]:
        if not self.scrapes:
            return {}
        took = sorted(self.scrapes)
        return {
            "metrics_scrape": {
                "scrapes": len(took),
                "p50_ms": ms(percentile(took, 0.5)),
                "max_ms": ms(took[-1]),
            }
        }

    async def stop(self) -> dict[str, Any]:
        report = await self.gateway.stop(STOP_TIMEOUT_S)
        if self._scraping is not None:
            await asyncio.gather(self._scraping, return_exceptions=True)
        if self.http is not None:
            await self.http.close()
        return {"clean": report.clean, "seconds": round(report.seconds, 3)}


async def run_in_process(plan: Plan) -> dict[str, Any]:
    """Fake, driver and gateway on one event loop, in this process."""
    with tempfile.TemporaryDirectory(prefix="bench-telegram-") as directory:
        fake = ReplyCountingFake()
        await fake.start()
        try:
            gut = GatewayUnderTest(Path(directory), fake.base_url, fake.token, plan)
            await gut.start()
            try:
                result = await drive(fake, plan, gut.begin)
                gut.end()
            finally:
                stopped = await gut.stop()
        finally:
            await fake.stop()
    del result["start"], result["end"], result["driver_cpu_cores"]  # the same process: costs
    return (
        result
        | gut.extra()
        | {
            "writer": gut.writer,
            "costs": gut.costs.report(),
            "stop": stopped,
        }
    )


def _fake_process(conn: Connection, plan: Plan, default_gc: bool) -> None:
    """Child process: the fake and the driver on their own event loop."""
    if not default_gc:
        tune_for_long_running_server()
    asyncio.run(_fake_main(conn, plan))


async def _fake_main(conn: Connection, plan: Plan) -> None:
    fake = ReplyCountingFake()
    await fake.start()
    try:
        conn.send(("ready", fake.base_url, fake.token))
        await asyncio.to_thread(conn.recv)  # the gateway is started

        async def on_warm() -> None:
            conn.send(("warm",))

        try:
            result = await drive(fake, plan, on_warm)
        except Exception as error:
            conn.send(("error", repr(error)))
        else:
            conn.send(("done", result))
        await asyncio.to_thread(conn.recv)  # the gateway is stopped
    finally:
        await fake.stop()


async def _receive(conn: Connection, child: BaseProcess, within: float) -> tuple[Any, ...]:
    """The child's next message; RuntimeError if it died or stayed silent for `within` s."""
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(conn.poll, 0.2):
        if not child.is_alive():
            raise RuntimeError(f"the fake's process died (exit code {child.exitcode})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the fake's process said nothing for {within:g} s")
    message: tuple[Any, ...] = conn.recv()
    if message[0] == "error":
        raise RuntimeError(f"the fake's process failed: {message[1]}")
    return message


async def run_separate(plan: Plan, default_gc: bool) -> dict[str, Any]:
    """The fake and the driver in a child process (own loop, own GIL); the gateway here."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=_fake_process, args=(theirs, plan, default_gc), daemon=True)
    child.start()
    # The phase itself, plus the warm-up and the drain, each bounded by DRAIN_WAIT_S.
    within = plan.seconds + 3 * DRAIN_WAIT_S
    try:
        with tempfile.TemporaryDirectory(prefix="bench-telegram-") as directory:
            _, base_url, token = await _receive(ours, child, DRAIN_WAIT_S)
            gut = GatewayUnderTest(Path(directory), base_url, token, plan)
            await gut.start()
            try:
                ours.send(("go",))
                await _receive(ours, child, within)  # warm: the measured window begins
                await gut.begin()
                result: dict[str, Any] = (await _receive(ours, child, within))[1]
                gut.end()
            finally:
                stopped = await gut.stop()
                if child.is_alive():
                    ours.send(("stop",))
        await asyncio.to_thread(child.join, DRAIN_WAIT_S)
    finally:
        if child.is_alive():
            child.kill()
    del result["start"], result["end"]
    result["fake_process_cpu_cores"] = result.pop("driver_cpu_cores")
    return (
        result
        | gut.extra()
        | {
            "writer": gut.writer,
            "costs": gut.costs.report(),
            "stop": stopped,
        }
    )


def run_phase(plan: Plan, separate: bool, default_gc: bool) -> dict[str, Any]:
    if separate:
        return asyncio.run(run_separate(plan, default_gc))
    return asyncio.run(run_in_process(plan))


def met(fixed: dict[str, Any] | None, sat: dict[str, Any] | None) -> dict[str, bool]:
    result: dict[str, bool] = {}
    if fixed:
        result["p99_ms_at_300"] = bool(fixed["p99_ms"] < TARGET_P99_MS and fixed["unanswered"] == 0)
    if sat:
        result["updates_per_s"] = bool(sat["updates_per_s"] >= TARGET_UPDATES_PER_S)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--chats", type=int, default=200)
    parser.add_argument("--rate", type=float, default=300.0, help="fixed-rate updates/s")
    parser.add_argument(
        "--backlog", type=int, default=2000, help="saturation: updates pushed, not yet answered"
    )
    parser.add_argument("--only", choices=("fixed", "saturation"))
    parser.add_argument(
        "--fake-process",
        choices=("same", "separate", "both"),
        default="same",
        help="run the fake on the gateway's loop (same), in a child process, or both ways",
    )
    parser.add_argument(
        "--intake",
        choices=("polling", "webhook", "both"),
        default="polling",
        help="how updates reach the gateway; both: every phase with each",
    )
    parser.add_argument(
        "--max-connections", type=int, default=40, help="webhook: POSTs in flight at once"
    )
    parser.add_argument(
        "--metrics", action="store_true", help="also serve /metrics and scrape it every second"
    )
    add_gc_option(parser)
    args = parser.parse_args()
    gc_mode = apply_gc_option(args)

    result: dict[str, Any] = {
        "bench": "telegram",
        "python": platform.python_version(),
        "aiogram": aiogram.__version__,
        "sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
        "chats": args.chats,
        "seconds": args.seconds,
        "rate": args.rate,
        "backlog": args.backlog,
        "gc": gc_mode,
        "fake_in_process": args.fake_process != "separate",
        "metrics_scraped": args.metrics,
    }
    intakes = ("polling", "webhook") if args.intake == "both" else (args.intake,)
    for intake in intakes:
        figures = run_intake(args, intake)
        if intake == intakes[0]:
            result["intake"] = intake
            result |= figures  # the headline figures: the first intake asked for
        else:
            result[intake] = figures  # beside them
    result["targets"] = {"updates_per_s": TARGET_UPDATES_PER_S, "p99_ms_at_300": TARGET_P99_MS}
    notes = NOTES_SAME if args.fake_process != "separate" else NOTES_SEPARATE
    result["notes"] = notes + (NOTES_WEBHOOK if "webhook" in intakes else [])
    print(json.dumps(result, indent=2))


def run_intake(args: argparse.Namespace, intake: str) -> dict[str, Any]:
    """Every phase asked for, with one intake, the fake in process and/or in its own."""
    runs: dict[str, dict[str, Any]] = {}
    for way in ("same", "separate"):
        if args.fake_process not in (way, "both"):
            continue
        separate = way == "separate"
        phases: dict[str, Any] = {}
        for phase, name in (("fixed", "fixed_rate"), ("saturation", "saturation")):
            if args.only in (None, phase):
                plan = Plan(
                    phase,
                    args.chats,
                    args.seconds,
                    args.rate,
                    args.backlog,
                    intake,
                    args.max_connections,
                    args.metrics,
                )
                phases[name] = run_phase(plan, separate, args.default_gc)
        runs[way] = phases
    # The headline figures are the ones asked for (fake in process, unless only separate).
    main_run = runs.get("same") or runs["separate"]
    figures = dict(main_run)
    figures["met"] = met(main_run.get("fixed_rate"), main_run.get("saturation"))
    if "same" in runs and "separate" in runs:
        separate_run = runs["separate"]
        figures["fake_separate_process"] = separate_run | {
            "met": met(separate_run.get("fixed_rate"), separate_run.get("saturation"))
        }
    return figures


NOTES_COMMON = [
    "latency: push_text() -> the fake logging the matching sendMessage, both time.monotonic().",
    "saturation latency is queueing by construction: about backlog / updates_per_s (Little's "
    "law); the throughput is the figure of merit there.",
    "bot_api_calls: every request the fake logged in the window; each turn also sends "
    "sendChatAction (the typing indicator), and a typing request still in flight when the "
    "instant turn ends is cancelled, which closes its keep-alive connection.",
]
NOTES_SAME = [
    "fake_in_process: the fake Bot API and the driver share the gateway's event loop, process "
    "and CPU (HTTP server, JSON, deepcopies of updates); costs include them, so the figures "
    "understate what the gateway alone does. fake_separate_process (with --fake-process both) "
    "has the same phases with the fake in a child process.",
    *NOTES_COMMON,
]
NOTES_SEPARATE = [
    "the fake Bot API and the driver ran in a child process with its own event loop; costs "
    "are the gateway process only (fake_process_cpu_cores is the child's).",
    *NOTES_COMMON,
]
NOTES_WEBHOOK = [
    "webhook: one POST per update, at most max_connections in flight, each answered only after "
    "its inbox commit (concurrent commits share a group commit); webhook_posts_not_2xx should "
    "be 0. The polling figures batch up to 100 updates per getUpdates instead.",
]


if __name__ == "__main__":
    main()
