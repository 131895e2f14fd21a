"""Benchmark: the operator console over a gateway with 10,000 sessions and 200 background jobs.

    python bench/console.py                    # 10,000 sessions, 200 jobs, 50 msg/s, 15 s a phase
    python bench/console.py --seconds 5        # quicker
    python bench/console.py --headless-only    # no terminal: headless phases only (profiling)

Prints one JSON object. Targets (the console performance issue), on the 2-core machine this
project runs on: with 10,000 sessions (the Sessions tab shows 500 rows) and 200 live jobs under
steady traffic, the console adds under 10 ms to the gateway's event-loop lag p99 and uses under
15 % of one core at its 1 Hz refresh.

One real gateway (SystemClock, scripted agent, notifier off, process sampling every second as
in production) on a fresh store in a temporary directory, with a loopback adapter. Setup (not
measured): every session says "hello" once, in intake batches of 500 (`deliver_batch`, as one
getUpdates answer would carry them), so each has a lane and is in `gateway.snapshot()`; then
`--processes` jobs (`sleep 600`, spread over the sessions) start through the gateway's process
registry. Then traffic runs through every phase: `--rate` "hello <n>" messages a second,
round-robin over the sessions, each on an absolute schedule in its own task.

Phases, one after another, over the same gateway and traffic:

  baseline           no console at all
  headless_overview  ConsoleApp (the product app) on Textual's headless driver at 120x40
  headless_sessions  the same app on its Sessions tab (10,000 sessions, 500 rows shown)
  terminal_overview  the same app on Textual's real Linux driver, writing to a real pty
  terminal_sessions  ... on the Sessions tab
  baseline_after     no console again: brackets the console phases against drift

Why two drivers: the headless driver is what the issue names, but it skips the last step of
every frame (App._display returns before turning the compositor's update into escape
sequences and writing them), so it under-states the console's CPU and writes nothing. The
terminal phases are what an operator runs: the benchmark re-runs itself as a child process
whose stdin/stdout/stderr are the slave side of a pty sized 120x40 (TIOCSWINSZ, COLUMNS/LINES,
TERM=xterm-256color); the app uses Textual's own LinuxDriver, which writes to that pty through
its writer thread, and this (parent) process reads the master side and counts every byte,
as a terminal emulator would receive them. The driver is subclassed only to count what it is
given (UTF-8 bytes and write calls), so the two counts cross-check each other. Phase
boundaries reach the parent as marks on a pipe; they fall half a refresh away from any tick,
so no frame is split between phases.

Per phase: the 10 ms lag probe's oversleep (p50/p99/max), reply latency (say() to the
adapter's send() of "You said: hello <n>") and the process CPU (all threads: the store
writer, the sampler, Textual's writer thread) over the window. A console phase's cost is its
process CPU minus the reference, the mean of the two baselines (same traffic, no console):
`console_share_of_one_core`, and per tick `console_cpu_ms_per_tick` (everything the refresh
causes: snapshot, rows, table diff, layout, render, escape sequences, the transcript read).
`tick_call_cpu_ms` is only the CPU spent inside `ConsoleApp.tick()` itself (thread time: it
awaits nothing that yields on these tabs); the rest is Textual's repaint after it.
`breakdown` times the product's own pieces of a Sessions tick outside the app (median of
ten, before traffic starts). After setup one full collection moves what setup allocated to
the oldest generation, as in a long-running gateway; GC during a phase is in its `costs`.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import gc
import json
import logging
import os
import platform
import pty
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from textual.drivers.linux_driver import LinuxDriver
from textual.pilot import Pilot

from bench.measure import Costs, add_gc_option, apply_gc_option, ms, percentile
from console import rows
from console.app import ConsoleApp
from console.backend import InProcessBackend
from console.tabs.sessions import MAX_SESSION_ROWS
from console.widgets.keyed_table import KeyedTable
from gateway_core.adapters.loopback import LoopbackAdapter, LoopbackUser
from gateway_core.agents.scripted import ScriptedAgent
from gateway_core.clock import SystemClock
from gateway_core.gateway import Gateway
from gateway_core.model import Origin
from gateway_core.snapshot import SessionQuery, select_sessions
from tests.support.harness import make_config

REPO = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 120, 40
TARGET_ADDED_LAG_P99_MS = 10.0
TARGET_SHARE_OF_ONE_CORE = 0.15
LAG_TICK = 0.010
REPLY_PREFIX = "You said: "
SETUP_BATCH = 500
SETUP_WAIT_S = 300.0  # bound on waiting for the setup replies
SETTLE_S = 5.0  # traffic running before the first window
WARMUP_TICKS = 3  # ticks after an app start or a tab switch before a window opens (first paint)
CHILD_TIMEOUT_S = 1800.0


# -- the gateway side --------------------------------------------------------------------


@dataclass
class CountingLoopback(LoopbackAdapter):
    """The loopback adapter, counting replies and timing the steady traffic's ones."""

    replies: int = 0
    asked: dict[str, float] = field(default_factory=dict)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (sent at, latency)

    async def send(self, origin: Origin, text: str, reply_to: str | None = None) -> str | None:
        message_id = await super().send(origin, text, reply_to)
        # The chat history the loopback keeps for tests would grow by one object a reply
        # (a real platform keeps it on its side): drop it, nothing here reads it.
        self.messages.clear()
        self.replies += 1
        if text.startswith(REPLY_PREFIX):
            asked = self.asked.pop(text[len(REPLY_PREFIX) :], None)
            if asked is not None:
                now = time.perf_counter()
                self.latencies.append((now, now - asked))
        return message_id


class CountingLog(logging.Handler):
    """Gateway and console log records go to a file (never to the terminal being measured);
    warnings and worse are counted, so a run that went wrong says so."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.first) < 5:
            self.first.append(f"{record.levelname} {record.name}: {record.getMessage()[:200]}")


class LagProbe:
    """How late a 10 ms ticker wakes: the event loop's responsiveness."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    async def run(self) -> None:
        while True:
            expected = time.perf_counter() + LAG_TICK
            await asyncio.sleep(LAG_TICK)
            self.samples.append(max(0.0, time.perf_counter() - expected))


class Traffic:
    """`rate` messages a second, round-robin over the sessions, on an absolute schedule."""

    def __init__(self, adapter: CountingLoopback, users: list[LoopbackUser], rate: float) -> None:
        self.adapter = adapter
        self.users = users
        self.rate = rate
        self.offered = 0
        self.failed = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        if self.rate <= 0:
            return
        start = time.perf_counter()
        while True:
            delay = start + self.offered / self.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            token = f"hello {self.offered}"
            user = self.users[self.offered % len(self.users)]
            self.offered += 1
            self.adapter.asked[token] = time.perf_counter()
            task = asyncio.create_task(self._say(user, token))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _say(self, user: LoopbackUser, token: str) -> None:
        try:
            await user.say(token)
        except Exception:
            self.failed += 1


class Reporter:
    """Phase marks (and the final result) for the parent, as JSON lines on a pipe."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd

    def send(self, message: dict[str, Any]) -> None:
        if self.fd is None:
            return
        data = (json.dumps(message) + "\n").encode()
        while data:
            data = data[os.write(self.fd, data) :]


class CountingDriver(LinuxDriver):
    """Textual's real Linux driver, counting what the app hands it for the terminal."""

    bytes_written: ClassVar[int] = 0
    writes: ClassVar[int] = 0

    def write(self, data: str) -> None:
        CountingDriver.bytes_written += len(data.encode("utf-8", "replace"))
        CountingDriver.writes += 1
        super().write(data)


class MeasuredConsole(ConsoleApp):
    """The product's ConsoleApp, with the thread CPU of each refresh tick recorded."""

    def __init__(self, backend: InProcessBackend, refresh_every: float) -> None:
        super().__init__(backend, refresh_every=refresh_every)
        self.tick_cpu: list[float] = []
        self._ticked = asyncio.Event()

    async def tick(self) -> None:
        started = time.thread_time()
        await super().tick()
        self.tick_cpu.append(time.thread_time() - started)
        self._ticked.set()

    async def next_ticks(self, count: int) -> None:
        """Wait until `count` more ticks have run (bounded: a stuck console fails the run)."""
        async with asyncio.timeout(count * self.refresh_every * 5 + 10):
            for _ in range(count):
                self._ticked.clear()
                await self._ticked.wait()


@dataclass
class Options:
    sessions: int
    processes: int
    seconds: float
    rate: float
    refresh: float
    headless_only: bool


def _summary(values: list[float]) -> dict[str, float | None]:
    values = sorted(values)
    return {
        "p50": ms(percentile(values, 0.50)),
        "p99": ms(percentile(values, 0.99)),
        "max": ms(values[-1]) if values else None,
    }


class Bench:
    def __init__(self, directory: Path, options: Options, reporter: Reporter) -> None:
        self.options = options
        self.reporter = reporter
        config = make_config(
            directory / "state",
            gateway={"sample_interval": 1},  # production default: the console shows CPU/RSS
            notifier={"interval": 0},
        )
        self.adapter = CountingLoopback()
        self.gateway = Gateway(
            config, agent=ScriptedAgent(), adapters=[self.adapter], clock=SystemClock()
        )
        self.users = [self.adapter.user(f"u{n}", name=f"user{n}") for n in range(options.sessions)]
        self.probe = LagProbe()
        self.traffic = Traffic(self.adapter, self.users, options.rate)
        self._background: list[asyncio.Task[None]] = []

    async def setup(self) -> dict[str, Any]:
        await self.gateway.start()
        started = time.perf_counter()
        for first in range(0, len(self.users), SETUP_BATCH):
            # At most two batches in flight: the store sees intake batches, not a flood.
            await self._replies_at_least(first - SETUP_BATCH)
            batch = [
                (user.origin, f"hello s{n}")
                for n, user in enumerate(self.users[first : first + SETUP_BATCH], first)
            ]
            await self.adapter.deliver_batch(batch)
        await self._replies_at_least(len(self.users))
        sessions_s = time.perf_counter() - started
        views = self.gateway.snapshot().sessions
        started = time.perf_counter()
        for n in range(self.options.processes):
            view = views[n * len(views) // self.options.processes]
            await self.gateway.processes.start(
                "sleep 600", session_id=view.session_id, generation=view.generation or 1
            )
        processes_s = time.perf_counter() - started
        await asyncio.sleep(1.5)  # every job forked and sampled once
        breakdown = self.breakdown()  # synchronous: before the lag probe starts
        # What setup allocated (10k lanes and sessions) goes to the oldest generation, where a
        # long-running gateway has it; otherwise the first young pass of whichever phase comes
        # first would pay for the whole setup.
        gc.collect()
        self._background = [
            asyncio.create_task(self.probe.run(), name="lag-probe"),
            asyncio.create_task(self.traffic.run(), name="traffic"),
        ]
        await asyncio.sleep(SETTLE_S)  # traffic steady before the first window
        snap = self.gateway.snapshot()
        return {
            "sessions_in_snapshot": len(snap.sessions),
            "jobs_running": snap.counts.processes,
            "sessions_s": round(sessions_s, 1),
            "processes_s": round(processes_s, 1),
            "breakdown": breakdown,
        }

    async def _replies_at_least(self, count: int) -> None:
        deadline = time.perf_counter() + SETUP_WAIT_S
        while self.adapter.replies < count:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"setup: {self.adapter.replies} of {count} replies")
            await asyncio.sleep(0.02)

    async def stop(self) -> dict[str, Any]:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        killed = await self.gateway.processes.kill_all(grace=1.0)
        await self.gateway.stop(0)
        return {"jobs_killed": sum(1 for k in killed if k.killed), "jobs": len(killed)}

    def breakdown(self) -> dict[str, Any]:
        """The product's pieces of one Sessions tick, timed outside the app (thread CPU)."""
        snapshot, order, build = [], [], []
        shown = 0
        for _ in range(10):
            started = time.thread_time()
            snap = self.gateway.snapshot()
            snapshot.append(time.thread_time() - started)
            started = time.thread_time()
            views = select_sessions(snap.sessions, SessionQuery(limit=MAX_SESSION_ROWS))
            order.append(time.thread_time() - started)
            started = time.thread_time()
            built = [rows.session_row(v, snap.taken_at) for v in views[:MAX_SESSION_ROWS]]
            build.append(time.thread_time() - started)
            shown = len(built)
        return {
            "snapshot_ms_median": ms(statistics.median(snapshot)),
            "sort_sessions_ms_median": ms(statistics.median(order)),
            "session_rows_ms_median": ms(statistics.median(build)),
            "rows_built": shown,
        }

    async def window(self, name: str, app: MeasuredConsole | None = None) -> dict[str, Any]:
        """Measure one phase for --seconds (a whole number of refresh periods)."""
        refresh = self.options.refresh
        periods = max(1, round(self.options.seconds / refresh))
        if app is not None:
            # Open the window half a period after a tick: no frame straddles a boundary.
            await app.next_ticks(1)
            await asyncio.sleep(refresh / 2)
        lags0, replies0 = len(self.probe.samples), len(self.adapter.latencies)
        ticks0 = 0 if app is None else len(app.tick_cpu)
        bytes0, writes0 = CountingDriver.bytes_written, CountingDriver.writes
        offered0, sent0 = self.traffic.offered, self.adapter.replies
        self.reporter.send({"mark": "begin", "phase": name})
        costs = Costs()
        costs.begin()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.sleep(periods * refresh)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        costs.end()
        self.reporter.send({"mark": "end", "phase": name})
        lags = self.probe.samples[lags0:]
        replies = [latency for _, latency in self.adapter.latencies[replies0:]]
        result: dict[str, Any] = {
            "seconds": round(wall, 2),
            "process_cpu_s": round(cpu, 3),
            "process_share_of_one_core": round(cpu / wall, 4),
            "loop_lag_ms": _summary(lags),
            "reply_ms": _summary(replies),
            "offered": self.traffic.offered - offered0,
            "replies_sent": self.adapter.replies - sent0,
            "costs": costs.report(),
        }
        if app is not None:
            ticks = app.tick_cpu[ticks0:]
            result["ticks"] = len(ticks)
            result["tick_call_cpu_ms"] = {
                **_summary(ticks),
                "mean": ms(statistics.fmean(ticks)) if ticks else None,
            }
            # A floor for the console's cost: the tick alone, without Textual's repaint.
            result["tick_call_share_of_one_core"] = round(sum(ticks) / wall, 4)
            result["tab"] = app.active_tab
            if app.snap is not None:
                result["sessions_in_snapshot"] = len(app.snap.sessions)
            if app.active_tab == "sessions":
                result["session_rows_shown"] = app.query_one("#session-table", KeyedTable).row_count
            if CountingDriver.writes > writes0:
                result["driver_bytes"] = CountingDriver.bytes_written - bytes0
                result["driver_writes"] = CountingDriver.writes - writes0
        return result

    async def console_phases(self, mode: str) -> dict[str, dict[str, Any]]:
        """The product app, over the running gateway: Overview, then the Sessions tab."""
        app = MeasuredConsole(InProcessBackend(self.gateway), self.options.refresh)
        if mode == "terminal":
            app.driver_class = CountingDriver
        results: dict[str, dict[str, Any]] = {}

        async def warm_up(ticks: int) -> list[float]:
            start = len(app.tick_cpu)
            await app.next_ticks(ticks)
            return app.tick_cpu[start:]

        async def drive(pilot: Pilot[object]) -> None:
            try:
                first = await warm_up(WARMUP_TICKS)
                results[f"{mode}_overview"] = await self.window(f"{mode}_overview", app)
                results[f"{mode}_overview"]["first_ticks_cpu_ms"] = [ms(t) for t in first]
                app.action_show_tab("sessions")  # as pressing "2" does
                first = await warm_up(WARMUP_TICKS)
                if app.active_tab != "sessions":
                    raise RuntimeError(f"the Sessions tab did not open ({app.active_tab})")
                results[f"{mode}_sessions"] = await self.window(f"{mode}_sessions", app)
                # The tab switch's own tick paints the 500 rows for the first time.
                results[f"{mode}_sessions"]["first_ticks_cpu_ms"] = [ms(t) for t in first]
            finally:
                app.exit()

        await app.run_async(headless=mode == "headless", size=(WIDTH, HEIGHT), auto_pilot=drive)
        if len(results) != 2:
            raise RuntimeError(f"the {mode} console phases did not complete")
        return results


async def run_phases(options: Options, reporter: Reporter, log: CountingLog) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-console-") as directory:
        bench = Bench(Path(directory), options, reporter)
        stopped: dict[str, Any] = {}
        try:
            setup = await bench.setup()
            breakdown = setup.pop("breakdown")
            phases: dict[str, dict[str, Any]] = {"baseline": await bench.window("baseline")}
            phases |= await bench.console_phases("headless")
            if not options.headless_only:
                phases |= await bench.console_phases("terminal")
            phases["baseline_after"] = await bench.window("baseline_after")
        finally:
            stopped = await bench.stop()
    return {
        "setup": setup,
        "breakdown": breakdown,
        "phases": phases,
        "teardown": stopped,
        "traffic_failures": bench.traffic.failed,
        "log_warnings": log.count,
        "log_first": log.first,
    }


def child_main(options: Options, report_fd: int | None, directory_for_log: Path) -> dict[str, Any]:
    counting = CountingLog()
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(logging.FileHandler(directory_for_log / "bench-console.log"))
    root.addHandler(counting)
    root.setLevel(logging.INFO)
    return asyncio.run(run_phases(options, Reporter(report_fd), counting))


# -- the terminal: run the phases in a child on a pty and count what reaches it ----------


@dataclass
class TerminalCount:
    total: int = 0
    marks: dict[str, int] = field(default_factory=dict)
    tail: bytes = b""


def _drain(master: int, count: TerminalCount) -> bool:
    """Read all the pty has; False once the child side is gone."""
    while True:
        try:
            data = os.read(master, 1 << 16)
        except BlockingIOError:
            return True
        except OSError:  # EIO: every slave descriptor closed
            return False
        if not data:
            return False
        count.total += len(data)
        count.tail = (count.tail + data)[-4000:]


def run_on_pty(argv: list[str]) -> tuple[dict[str, Any], TerminalCount]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", HEIGHT, WIDTH, 0, 0))
    report_r, report_w = os.pipe()
    env = {
        **os.environ,
        "TERM": "xterm-256color",
        "COLUMNS": str(WIDTH),
        "LINES": str(HEIGHT),
        "PYTHONIOENCODING": "utf-8",
        "LANG": "C.UTF-8",
    }
    command = [sys.executable, str(Path(__file__).resolve()), *argv]
    child = subprocess.Popen(
        [*command, "--child-report-fd", str(report_w)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        pass_fds=(report_w,),
        env=env,
        cwd=REPO,
        start_new_session=True,
    )
    os.close(slave)
    os.close(report_w)
    os.set_blocking(master, False)
    count = TerminalCount()
    result: dict[str, Any] | None = None
    error: str | None = None
    pending = b""
    open_fds = [master, report_r]
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    try:
        while report_r in open_fds:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the benchmark child ran over {CHILD_TIMEOUT_S:.0f} s")
            ready, _, _ = select.select(open_fds, [], [], 1.0)
            if master in ready and not _drain(master, count):
                open_fds.remove(master)
            if report_r not in ready:
                continue
            data = os.read(report_r, 1 << 16)
            if not data:
                open_fds.remove(report_r)
                continue
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                message = json.loads(line)
                if "mark" in message:
                    # Everything the child wrote before this mark is in the pty by now.
                    if master in open_fds and not _drain(master, count):
                        open_fds.remove(master)
                    count.marks[f"{message['phase']}:{message['mark']}"] = count.total
                elif "result" in message:
                    result = message["result"]
                elif "error" in message:
                    error = message["error"]
        if master in open_fds:
            end = time.monotonic() + 10
            while time.monotonic() < end and _drain(master, count):
                time.sleep(0.05)
                if child.poll() is not None:
                    _drain(master, count)
                    break
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(master)
        os.close(report_r)
    if result is None:
        sys.stderr.write(f"terminal tail: {count.tail[-2000:]!r}\n")
        raise RuntimeError(f"the benchmark child failed (exit {child.returncode}): {error}")
    return result, count


# -- the report ----------------------------------------------------------------------------


def summarize(result: dict[str, Any], terminal: TerminalCount | None, refresh: float) -> None:
    phases: dict[str, dict[str, Any]] = result["phases"]
    baselines = [phases[name] for name in ("baseline", "baseline_after") if name in phases]
    reference = {
        "share_of_one_core": round(
            statistics.fmean(p["process_share_of_one_core"] for p in baselines), 4
        ),
        "loop_lag_p99_ms": round(statistics.fmean(p["loop_lag_ms"]["p99"] for p in baselines), 2),
        "from": "mean of baseline and baseline_after (same traffic, no console)",
        # How far apart the two baselines are: the noise in every console_share below.
        "baseline_spread_share": round(
            max(p["process_share_of_one_core"] for p in baselines)
            - min(p["process_share_of_one_core"] for p in baselines),
            4,
        ),
    }
    result["reference"] = reference
    worst_lag = worst_share = -1e9
    worst: dict[str, str] = {}
    met_by_phase: dict[str, dict[str, bool]] = {}
    for name, phase in phases.items():
        if "ticks" not in phase:
            continue
        share = phase["process_share_of_one_core"] - reference["share_of_one_core"]
        added = phase["loop_lag_ms"]["p99"] - reference["loop_lag_p99_ms"]
        phase["console_share_of_one_core"] = round(share, 4)
        phase["console_cpu_ms_per_tick"] = (
            round(share * phase["seconds"] / phase["ticks"] * 1000, 2) if phase["ticks"] else None
        )
        phase["added_loop_lag_p99_ms"] = round(added, 2)
        if terminal is not None and f"{name}:begin" in terminal.marks:
            seen = terminal.marks[f"{name}:end"] - terminal.marks[f"{name}:begin"]
            phase["pty_bytes"] = seen
            phase["pty_bytes_per_tick"] = round(seen / phase["ticks"]) if phase["ticks"] else None
        if "driver_bytes" in phase and phase["ticks"]:
            phase["driver_bytes_per_tick"] = round(phase["driver_bytes"] / phase["ticks"])
        met_by_phase[name] = {
            "added_loop_lag_p99_ms": added < TARGET_ADDED_LAG_P99_MS,
            "console_share_of_one_core": share < TARGET_SHARE_OF_ONE_CORE,
        }
        if added > worst_lag:
            worst_lag, worst["added_loop_lag_p99_ms"] = added, name
        if share > worst_share:
            worst_share, worst["console_share_of_one_core"] = share, name
    result["headline"] = {
        name: {
            key: phase.get(key)
            for key in (
                "console_share_of_one_core",
                "console_cpu_ms_per_tick",
                "tick_call_share_of_one_core",
                "added_loop_lag_p99_ms",
                "pty_bytes_per_tick",
            )
        }
        for name, phase in phases.items()
        if "ticks" in phase
    }
    result["refresh_s"] = refresh
    result["targets"] = {
        "added_loop_lag_p99_ms": TARGET_ADDED_LAG_P99_MS,
        "console_share_of_one_core": TARGET_SHARE_OF_ONE_CORE,
    }
    result["worst_phase"] = worst
    result["met_by_phase"] = met_by_phase
    result["met"] = {
        "added_loop_lag_p99_ms": worst_lag < TARGET_ADDED_LAG_P99_MS,
        "console_share_of_one_core": worst_share < TARGET_SHARE_OF_ONE_CORE,
    }
    if terminal is not None:
        result["pty_bytes_total"] = terminal.total


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=200, help="background jobs (sleep 600)")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each phase")
    parser.add_argument("--rate", type=float, default=50.0, help="steady traffic, messages/s")
    parser.add_argument("--refresh", type=float, default=1.0, help="console refresh period, s")
    parser.add_argument(
        "--headless-only", action="store_true", help="no pty child: headless console phases only"
    )
    parser.add_argument("--child-report-fd", type=int, help=argparse.SUPPRESS)
    add_gc_option(parser)
    args = parser.parse_args()
    options = Options(
        sessions=args.sessions,
        processes=args.processes,
        seconds=args.seconds,
        rate=args.rate,
        refresh=args.refresh,
        headless_only=args.headless_only,
    )

    if args.child_report_fd is not None:  # the child on the pty: run the phases, report
        reporter = Reporter(args.child_report_fd)
        gc_mode = apply_gc_option(args)
        try:
            with tempfile.TemporaryDirectory(prefix="bench-console-log-") as logs:
                result = child_main(options, args.child_report_fd, Path(logs))
            result["gc"] = gc_mode
            reporter.send({"result": result})
        except BaseException:
            reporter.send({"error": traceback.format_exc()})
            raise
        return

    terminal: TerminalCount | None = None
    if args.headless_only:
        gc_mode = apply_gc_option(args)
        with tempfile.TemporaryDirectory(prefix="bench-console-log-") as logs:
            result = child_main(options, None, Path(logs))
        result["gc"] = gc_mode
    else:
        passed = [
            f"--sessions={args.sessions}",
            f"--processes={args.processes}",
            f"--seconds={args.seconds}",
            f"--rate={args.rate}",
            f"--refresh={args.refresh}",
            *(["--default-gc"] if args.default_gc else []),
        ]
        result, terminal = run_on_pty(passed)
    summarize(result, terminal, args.refresh)
    output = {
        "bench": "console",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "terminal": None if args.headless_only else f"pty {WIDTH}x{HEIGHT}, xterm-256color",
        "sessions": args.sessions,
        "processes": args.processes,
        "rate_per_s": args.rate,
        "seconds_per_phase": args.seconds,
        **result,
    }
    print(json.dumps(output, indent=2))


if __name__ == "__main__":
    main()
