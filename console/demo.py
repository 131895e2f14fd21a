"""`switchboard demo`: the console over a real gateway with simulated users.

Everything runs through the real gateway code on a throwaway state dir: the loopback platform,
the scripted agent, real background processes. Simulated users keep producing what the
console can show (quick answers, long turns with notifiers, queued follow-ups, background jobs
with completions and watch matches, a question nobody answers). "Restart now" interrupts
every running turn as a crash would and adds crashed conversations of every verdict, so the
recovery tab fills up and can be worked through.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import signal
import tempfile
from pathlib import Path

from console.app import ConsoleApp
from console.backend import InProcessBackend
from console.leaving import Leave
from console.log_setup import log_to_file
from console.walkthrough import scenes
from gateway_core.adapters.loopback import LoopbackAdapter, LoopbackUser
from gateway_core.agents.scripted import ScriptedAgent
from gateway_core.clock import Clock, SystemClock
from gateway_core.config import Config, load_config
from gateway_core.control import ActionResult
from gateway_core.gateway import Gateway
from gateway_core.log_ring import LogRing
from gateway_core.model import Gate, Origin, RecoveryAction, SessionKey
from gateway_core.processes.killing import kill_tree
from gateway_core.recovery.startup import BootRecovery
from gateway_core.runtime import GatewayState
from gateway_core.service.control_server import ControlServer
from gateway_core.store import DATABASE_NAME, Store
from gateway_core.words import plural

log = logging.getLogger(__name__)

BUILD = "for i in 1 2 3 4 5 6 7 8; do echo compiling unit $i; sleep 2; done; echo BUILD OK"
SERVER = (
    "for i in $(seq 1 40); do echo request $i served; "
    "[ $((i % 7)) = 0 ] && echo 'ERROR upstream timed out'; sleep 1.5; done"
)
HOSTILE = "[/x] [@click=app.quit]click me[/] \x1b]0;pwned\x07\x1b[5mblink"


def demo_config(state_dir: Path, gate: Gate) -> Config:
    path = state_dir / "demo.toml"
    path.write_text(
        "[gateway]\n"
        f'state_dir = "{state_dir}"\n'
        "drain_timeout = 10\n"
        "grace = 1\n"
        "sample_interval = 1\n"
        "[recovery]\n"
        f'gate = "{gate.value}"\n'
        # Every "x" leaves held candidates, and every later boot finds them: with the usual
        # guard (3 boots within 5 min) two x and a ctrl+r looked like a crash loop. Here it
        # takes six restarts, each within 30 s of the one before.
        "loop_boots = 6\n"
        "loop_window = 30\n"
        "[notifier]\n"
        "interval = 6\n"
        "[agent]\n"
        'kind = "scripted"\n'
        "clarify_timeout = 25\n"
    )
    return load_config(path, env={})


def log_to_file_and_ring(state_dir: Path) -> LogRing:
    """Logs go to a file and the console's log pane, never to the screen."""
    log_to_file(state_dir / "gateway.log", "info")
    ring = LogRing()
    logging.getLogger().addHandler(ring)
    return ring


async def _user(user: LoopbackUser, script: list[tuple[str, float]]) -> None:
    """Say each line, then wait; forever. A failure is logged, never raised into the UI."""
    for text, pause in itertools.cycle(script):
        try:
            await user.say(text)
        except Exception:
            log.exception("simulated user %s failed", user.origin.chat_id)
        await asyncio.sleep(pause)


def users(adapter: LoopbackAdapter) -> list[asyncio.Task[None]]:
    def terminal(command: str, **flags: object) -> str:
        return "tool terminal " + json.dumps({"command": command, "background": True, **flags})

    cast = {
        ("ada", None): [("hello", 4.0), ("what time is it?", 6.0)],
        ("bob", None): [("think 20", 30.0)],
        ("cy", None): [("think 8", 0.5), ("and a follow-up", 0.5), ("one more", 25.0)],
        ("dev-team", "42"): [(terminal(BUILD, notify_on_complete=True), 40.0)],
        ("dev-team", "7"): [(terminal(SERVER, watch_patterns=["ERROR"]), 70.0)],
        ("eve", None): [("ask Which branch should I deploy?", 60.0)],
        ("fay", None): [("steps 4", 15.0), ('tool sleep {"seconds": 3}', 15.0)],
        ("mallory", None): [(HOSTILE, 20.0)],
    }
    tasks = []
    for (chat, topic), script in cast.items():
        user = adapter.user(chat, topic, name=chat)
        tasks.append(asyncio.create_task(_user(user, script), name=f"demo-user-{chat}"))
    return tasks


def decided(boot: BootRecovery) -> str:
    """What the recovery pass of a boot did, counted by what happens to each candidate."""

    def count(action: RecoveryAction) -> int:
        return len(boot.with_action(action))

    parts = [
        f"{count(RecoveryAction.RESUME)} resumed",
        f"{count(RecoveryAction.HOLD)} held for an operator",
        f"{count(RecoveryAction.WAIT)} waiting for their user",
        f"{count(RecoveryAction.CLEAR)} cleared (finished or stale)",
    ]
    if skipped := count(RecoveryAction.SKIP):
        parts.append(f"{skipped} suspended")
    return ", ".join(parts)


class Demo:
    def __init__(self, state_dir: Path, gate: Gate) -> None:
        self.state_dir = state_dir
        self.config = demo_config(state_dir, gate)
        self.adapter = LoopbackAdapter()
        self.gateway = Gateway(
            self.config, agent=ScriptedAgent(), adapters=[self.adapter], clock=SystemClock()
        )
        self._restarts = itertools.count(1)

    async def crash_restart(self) -> ActionResult:
        """Interrupt everything as a crash would, add crashed conversations of every verdict,
        and boot again: the recovery pass decides, the console shows it."""
        round_ = next(self._restarts)
        report = await self.gateway.stop(0)
        now = self.gateway.clock.now()
        async with await Store.open(
            self.state_dir / DATABASE_NAME, clock=self.gateway.clock
        ) as store:
            # stop(0) marked the turns it cut "drain-timeout"; this stands for a crash.
            await store.recovery.mark_many(list(report.interrupted), "crash")
            for scene in scenes(now):
                name = f"{scene.user}-{round_}"
                origin = Origin("loopback", name, user_name=name) if scene.origin else None
                session = await store.sessions.ensure(SessionKey("loopback", name), origin)
                await store.transcript.append(session.id, list(scene.rows))
                if scene.suspended:
                    await store.recovery.suspend(session.id, "operator")
                else:
                    await store.recovery.mark(session.id, "crash")
        boot = await self.gateway.start()
        return ActionResult(True, f"restarted as run {boot.run.id}: {decided(boot)}")


async def run_demo(
    gate: Gate, state_dir: Path | None, *, read_only: bool, mouse: bool, keep: bool = False
) -> int:
    """The demo on `state_dir` (kept), or on a temporary dir deleted at the end unless `keep`.
    The state path is printed only when it is kept."""
    if state_dir is not None:
        return await _run(gate, state_dir, read_only=read_only, mouse=mouse, kept=True)
    if keep:
        kept_dir = Path(tempfile.mkdtemp(prefix="switchboard-demo-"))
        return await _run(gate, kept_dir, read_only=read_only, mouse=mouse, kept=True)
    with tempfile.TemporaryDirectory(prefix="switchboard-demo-") as temporary:
        return await _run(gate, Path(temporary), read_only=read_only, mouse=mouse, kept=False)


def say(text: str) -> None:
    """Print, unless the terminal is gone (SIGHUP): the demo still cleans up."""
    with contextlib.suppress(OSError):
        print(text, flush=True)


async def _run(gate: Gate, state_dir: Path, *, read_only: bool, mouse: bool, kept: bool) -> int:
    ring = log_to_file_and_ring(state_dir)
    demo = Demo(state_dir, gate)
    await demo.gateway.start()
    # The demo serves its control socket like a real gateway: a detached demo can be
    # attached to, and `switchboard status --socket ...` works on it.
    server = ControlServer(demo.gateway, demo.config.control.socket, log_ring=ring)
    await server.start()
    simulated = users(demo.adapter)
    backend = InProcessBackend(demo.gateway, read_only=read_only, log=ring)
    app = ConsoleApp(backend, demo_restart=None if read_only else demo.crash_restart)
    signalled = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        # SIGTERM, or SIGHUP when the terminal closed: leave the way "drain and stop" does.
        signalled.set()
        if app.is_running:
            app.exit(Leave.SIGNAL)

    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    code = 0
    try:
        try:
            outcome = await app.run_async(mouse=mouse)
        except Exception:  # the UI failed: the demo still stops everything it started
            log.exception("the console failed")
            outcome = None
        if outcome is None:
            say(f"The console failed; the demo stops. What happened is in {ring_file(state_dir)}.")
            code = 1
        elif outcome == Leave.DETACH and not signalled.is_set():
            say(
                "Detached: the demo gateway keeps running, with its simulated users.\n"
                f"  Attach to it:  switchboard attach --socket {server.path}\n"
                "  Ctrl+C drains it, stops it and ends the demo."
            )
            await signalled.wait()
        if demo.gateway.state is not GatewayState.STOPPED:
            report = await demo.gateway.stop()
            say(f"Gateway stopped ({'clean' if report.clean else 'turns left for recovery'}).")
    finally:
        for task in simulated:
            task.cancel()
        await asyncio.gather(*simulated, return_exceptions=True)
        if demo.gateway.state is not GatewayState.STOPPED:
            await demo.gateway.stop(0)
        await server.close()
        # The gateway leaves background jobs running on purpose (a restart re-adopts them);
        # a demo that ends must not leave its jobs behind.
        killed = await kill_leftover_jobs(state_dir, demo.gateway.clock)
        if killed:
            say(f"Stopped {plural(killed, 'background job')} the demo had started.")
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            loop.remove_signal_handler(signum)
    if kept:
        say(f"State and log kept in {state_dir}")
    return code


def ring_file(state_dir: Path) -> Path:
    return state_dir / "gateway.log"


async def kill_leftover_jobs(state_dir: Path, clock: Clock) -> int:
    """Kill every job the store says still runs (whole trees; a reused pid is left alone)."""
    path = state_dir / DATABASE_NAME
    if not path.exists():
        return 0
    async with await Store.open(path, clock=clock) as store:
        live = await store.processes.live()
    killed = 0
    for job in live:
        if job.pid is None:
            continue
        result = await asyncio.to_thread(kill_tree, job.pid, job.pid_started_at, 1.0)
        if result.killed:
            killed += 1
        else:
            log.error("job %s survived the demo's end: pids %s", job.id, result.survivors)
    return killed
