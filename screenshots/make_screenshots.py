"""Screenshots of the operator console: the real app over a real gateway, driven through real
states, on a frozen clock.

    python screenshots/make_screenshots.py              # every picture
    python screenshots/make_screenshots.py recovery     # only the named ones
    python screenshots/make_screenshots.py --svg-only   # no PNGs (no rsvg-convert needed)

What it needs: the dev install (`pip install -e '.[dev]'`), `rsvg-convert` for the PNGs
(Debian: librsvg2-bin), and a font with the control-picture glyphs (␛, ␇) that the console
shows for escape sequences in hostile text (Debian: fonts-freefont-ttf); without one,
fontconfig draws them as empty boxes. The script says what is missing.

The scenario is the demo's, made repeatable: a throwaway state dir; a first run that
"crashed" and left conversations of every kind (the walkthrough's scenes); a second boot whose
real recovery pass decides them; loopback users talking to the scripted agent (answers, long
turns with "still working" notifiers, queued follow-ups, a question, hostile markup and
escape sequences); real background jobs; real operator actions through the control API; and
the gateway's own events in the log pane. The clock is a manual one, moved by fixed steps,
and the process ids are drawn from a seeded generator, so two runs draw the same pictures
(job output is real, and waited for). Then a drain (the overview), and two more quick
restarts that trip the restart-loop guard.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from console.app import ConsoleApp  # noqa: E402
from console.backend import InProcessBackend  # noqa: E402
from console.walkthrough import scenes  # noqa: E402
from console.widgets.follow_log import FollowLog  # noqa: E402
from gateway_core.adapters.loopback import LoopbackAdapter  # noqa: E402
from gateway_core.agents.scripted import ScriptedAgent  # noqa: E402
from gateway_core.clock import ManualClock  # noqa: E402
from gateway_core.control import Action, Control  # noqa: E402
from gateway_core.drain import DrainReport  # noqa: E402
from gateway_core.events import Event, Subscription  # noqa: E402
from gateway_core.gateway import Gateway  # noqa: E402
from gateway_core.log_ring import LogRing  # noqa: E402
from gateway_core.model import Origin, ProcessState, SessionKey  # noqa: E402
from gateway_core.processes import registry  # noqa: E402
from gateway_core.runtime import GatewayState  # noqa: E402
from gateway_core.service.runner import log_event  # noqa: E402
from gateway_core.store import DATABASE_NAME, Store  # noqa: E402
from tests.support.console_data import show  # noqa: E402
from tests.support.harness import make_config  # noqa: E402

PNG_WIDTH = 1400
EPOCH = 1_760_000_000.0  # 2025-10-09 08:53:20 UTC: where the frozen clock starts
SEED = 13
SIZE = (120, 40)
OPERATOR = "alice"
HOSTILE = "[/x] [@click=app.quit]click me[/] \x1b]0;pwned\x07\x1b[5mblink"
BUILD = "printf 'compiling unit %s of 8\\n' 1 2 3 4 5 6; sleep 600"
SERVER = "printf 'request %s served\\n' 1 2 3; echo 'ERROR upstream timed out'; sleep 600"


@dataclass(frozen=True, slots=True)
class Picture:
    name: str
    keys: tuple[str, ...]
    about: str
    read_only: bool = False
    size: tuple[int, int] = SIZE


LIVE = (
    Picture(
        "sessions",
        ("2", "slash", *"mallory", "enter"),
        "Sessions filtered: a hostile user's text shown inert",
    ),
    Picture("recovery", ("3", "down", "space"), "Recovery after a crash: one row marked"),
    Picture("processes", ("4",), "Background jobs: running, exited, killed"),
    Picture("timers", ("5",), "'Still working' notifiers of long turns"),
    Picture("audit", ("6",), "Operator actions and the gateway's log"),
    # The scenario's gateway keeps its state in SQLite: the tab says plainly it runs alone
    # (a cluster of nodes is pictured by tests/test_console_snapshots.py).
    Picture("nodes", ("7",), "Nodes: on SQLite this gateway runs alone"),
    Picture(
        "confirm",
        ("3", "space", "down", "down", "down", "space", "c"),
        "Clearing two marked candidates",
    ),
    Picture("force_resume", ("3", "down", "f", *"she still needs it"), "Force-resume asks why"),
    Picture("leave", ("q",), "Leaving: detach, or drain and stop"),
    Picture("help", ("3", "question_mark"), "Help: the keys of the recovery tab"),
    Picture("read_only", ("3",), "Read-only: nothing that changes the gateway", read_only=True),
    Picture("narrow", ("3",), "Recovery at 80x24", size=(80, 24)),
)
DRAINING = Picture("overview", (), "The overview during a drain")
LOOPING = Picture("loop_guard", ("3",), "The restart-loop guard tripped, explained")
PICTURES = (*LIVE, DRAINING, LOOPING)
BY_NAME = {picture.name: picture for picture in PICTURES}


class SeededTokens:
    """Stands in for `secrets` where the process registry draws job ids: seeded, so the
    pictures show the same ids on every run."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def token_hex(self, nbytes: int) -> str:
        return self._random.randbytes(nbytes).hex()


class Scenario:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.clock = ManualClock(EPOCH)
        self.adapter = LoopbackAdapter()
        self.ring = LogRing(clock=self.clock.now)
        self.config = make_config(
            state_dir,
            gateway={"drain_timeout": 600, "grace": 1},
            notifier={"interval": 60},
            agent={"clarify_timeout": 900},
        )
        self.gateway = Gateway(
            self.config, agent=ScriptedAgent(), adapters=[self.adapter], clock=self.clock
        )
        self.control = Control(self.gateway)
        self._following: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None
        self.seen: Counter[str] = Counter()  # the events logged so far, by kind

    async def start(self) -> None:
        if self._following is None:  # subscribed before the boot: its events count too
            self._subscription = self.gateway.events.subscribe()
            self._following = asyncio.ensure_future(self._follow())
        await self.gateway.start()

    async def _follow(self) -> None:
        """The gateway's events as log lines, the way `switchboard run` logs them."""
        assert self._subscription is not None
        async for event in self._subscription:
            self._log(event)

    async def quiet_down(self) -> None:
        """Until what the gateway was given is done and logged: its boot's resumes and
        notices race with what comes next otherwise, and the log would differ run to run."""
        await self.gateway.wait_idle()
        await self.logged()

    async def logged(self) -> None:
        """Until every event published so far is in the log (turns may still be running)."""
        await self._settle()
        await self._until(
            lambda: self._subscription is None or self._subscription.queue.empty(), "the log"
        )

    def _log(self, event: Event) -> None:
        self.seen[type(event).__name__] += 1
        session_id = getattr(event, "session_id", None)
        key = None
        if isinstance(session_id, int) and self.gateway.state is not GatewayState.STOPPED:
            lane = self.gateway.lanes.find(session_id)
            key = None if lane is None else str(lane.session.key)
        log_event(event, key)

    async def crashed_run(self) -> None:
        """A first run, then conversations of every kind it left behind (as a crash would)."""
        await self.gateway.start()
        await self.gateway.stop(0)
        async with await Store.open(self.state_dir / DATABASE_NAME, clock=self.clock) as store:
            for scene in scenes(self.clock.now()):
                origin = Origin("loopback", scene.user, user_name=scene.user)
                session = await store.sessions.ensure(
                    SessionKey("loopback", scene.user), origin if scene.origin else None
                )
                await store.transcript.append(session.id, list(scene.rows))
                if scene.suspended:
                    await store.recovery.suspend(session.id, "operator")
                else:
                    await store.recovery.mark(session.id, "crash")
        self.clock.advance(30)

    async def traffic(self) -> None:
        """Users talk; jobs run; an operator acts."""

        async def say(
            chat: str, text: str, name: str | None = None, topic: str | None = None, *,
            answered: bool = False,
        ) -> None:  # fmt: skip
            user = self.adapter.user(chat, topic, name=name or chat)
            sent = self.seen["ReplySent"]
            await user.say(text)
            if answered:  # one at a time: the log shows their events in the same order
                await user.wait_for(1, within=20)
                await self._until(lambda: self.seen["ReplySent"] > sent, f"{chat}'s reply logged")

        def terminal(command: str, **flags: object) -> str:
            import json

            return "tool terminal " + json.dumps({"command": command, "background": True, **flags})

        await say("zoe", "hello", "Zoë", answered=True)
        await say("bob", "think 900")
        await say("cy", "think 600")
        await say("cy", "and a follow-up")
        await say("cy", "one more thing")
        await say("eve-2", "ask Which branch should I deploy?", "eve")
        await say("mallory", HOSTILE, HOSTILE, answered=True)
        build = terminal(BUILD, notify_on_complete=True)
        await say("dev-team", build, "dev-team", "42", answered=True)
        # Watched for a pattern it never prints: a match starts a notice turn whenever the
        # output happens to be read, and the pictures would differ from run to run.
        server = terminal(SERVER, watch_patterns=["FATAL"])
        await say("dev-team", server, "dev-team", "7", answered=True)
        # A job of no conversation (an operator's): its ending starts no notice turn.
        await self.gateway.processes.start(
            "echo tests passed; exit 0", session_id=None, generation=0
        )
        await self._until(self._quick_done, "the quick job exiting")
        await self._settle()
        await say("gus-2", terminal("sleep 600"), "gus", answered=True)
        await self._until(lambda: len(self.gateway.processes.all()) == 4, "four jobs")
        await self._until(self._outputs_written, "the jobs' output")
        self.clock.advance(75)  # turns and jobs age; the notifiers speak once
        await self._settle()
        sleeper = next(j for j in self.gateway.processes.all() if j.record.command == "sleep 600")
        await self.control.kill_process(sleeper.id, actor=OPERATOR)
        await self.control.quiet(actor=OPERATOR)
        self.clock.advance(20)
        await self.control.resume_intake(actor=OPERATOR)
        await Control(self.gateway, read_only=True).perform(Action.CLEAR, ["4"], actor="bob")
        await self.logged()

    def _quick_done(self) -> bool:
        quick = [j for j in self.gateway.processes.all() if j.record.command.endswith("exit 0")]
        return bool(quick) and all(j.state is not ProcessState.RUNNING for j in quick)

    def _outputs_written(self) -> bool:
        wanted = {BUILD: "compiling unit 6 of 8", SERVER: "ERROR upstream timed out"}
        for job in self.gateway.processes.all():
            want = wanted.get(job.record.command)
            if want is not None and job.output.last_line != want:
                return False
        quick = [j for j in self.gateway.processes.all() if j.record.command.endswith("exit 0")]
        return all(j.state is not ProcessState.RUNNING for j in quick)

    async def _until(self, check: Callable[[], bool], what: str, within: float = 20) -> None:
        deadline = time.monotonic() + within
        while not check():
            if time.monotonic() > deadline:
                jobs = [
                    (j.record.command, j.state, j.output.last_line)
                    for j in self.gateway.processes.all()
                ]
                raise RuntimeError(f"the scenario stalled: {what} (jobs: {jobs})")
            await asyncio.sleep(0.05)  # real processes: no event tells us their output

    async def _settle(self) -> None:
        """Let the gateway's tasks run what the last step started."""
        for _ in range(20):
            await asyncio.sleep(0.01)

    async def drain(self) -> asyncio.Future[DrainReport]:
        draining = asyncio.ensure_future(self.gateway.stop(600))
        await self._until(lambda: self.gateway.state is GatewayState.DRAINING, "the drain")
        self.clock.advance(45)
        await self.logged()
        return draining

    async def loop(self, draining: asyncio.Future[DrainReport]) -> None:
        """Two more quick restarts with candidates left: the third boot trips the guard."""
        self.gateway.force_stop()
        await draining
        self.clock.advance(40)
        await self.start()  # the drain's interrupted turns resume here
        await self._settle()
        # A turn cut by the next quick restart is what the guard holds back at the boot after.
        await self.adapter.user("kim", name="kim").say("think 900")
        await self._until(lambda: bool(self.gateway.lanes.running()), "kim's turn")
        self.clock.advance(10)
        await self.gateway.stop(0)
        self.clock.advance(40)
        await self.start()
        await self.logged()

    async def close(self) -> None:
        if self.gateway.state is not GatewayState.STOPPED:
            self.gateway.force_stop()
            await self.gateway.stop(0)
        if self._following is not None:
            self._following.cancel()
        async with await Store.open(self.state_dir / DATABASE_NAME, clock=self.clock) as store:
            live = await store.processes.live()
        from gateway_core.processes.killing import kill_tree

        for job in live:  # the jobs outlive a stopped gateway on purpose; not ours
            if job.pid is not None:
                await asyncio.to_thread(kill_tree, job.pid, job.pid_started_at, 1.0)


async def draw(scenario: Scenario, picture: Picture) -> str:
    """One picture of the real app over the scenario's gateway, as an SVG."""
    backend = InProcessBackend(
        scenario.gateway, read_only=picture.read_only, log=scenario.ring, actor=OPERATOR
    )
    app = ConsoleApp(backend, refresh_every=3600)
    app.animation_level = "none"
    async with app.run_test(size=picture.size) as pilot:
        await show(pilot, picture.keys)
        await app.tick()
        await show(pilot, ())
        # Every log in a picture shows its end. Whether a log still follows its end after two
        # batches of lines depends on when its deferred scroll ran (a loaded machine drew
        # the audit log one line short), so the picture does not ask it.
        for log in app.query(FollowLog):
            log.scroll_end(animate=False, immediate=True)
        await show(pilot, ())
        return app.export_screenshot(title=f"Switchboard: {picture.about}", simplify=True)


async def make(chosen: Sequence[Picture], work: Path) -> dict[str, str]:
    os.environ["TZ"] = "UTC"  # the log pane's times
    time.tzset()
    registry.secrets = SeededTokens(SEED)  # type: ignore[attr-defined,assignment]
    logging.getLogger().setLevel(logging.INFO)
    scenario = Scenario(work / "state")
    logging.getLogger().addHandler(scenario.ring)
    drawn: dict[str, str] = {}
    wanted = {p.name for p in chosen}
    try:
        await scenario.crashed_run()
        await scenario.start()
        await scenario.quiet_down()
        await scenario.traffic()
        for picture in LIVE:
            if picture.name in wanted:
                drawn[picture.name] = await draw(scenario, picture)
        if not wanted & {DRAINING.name, LOOPING.name}:
            return drawn
        draining = await scenario.drain()
        if DRAINING.name in wanted:
            drawn[DRAINING.name] = await draw(scenario, DRAINING)
        await scenario.loop(draining)
        if LOOPING.name in wanted:
            drawn[LOOPING.name] = await draw(scenario, LOOPING)
    finally:
        await scenario.close()
        logging.getLogger().removeHandler(scenario.ring)
    return drawn


def to_png(svg: Path, converter: str) -> Path:
    """The SVG as a PNG. librsvg drops the non-breaking spaces Rich writes at the start of a
    text run (so indented lines lose their indent) unless the document preserves spaces: the
    converter is given a copy that says so; the SVG on disk stays as Textual wrote it."""
    png = svg.with_suffix(".png")
    document = svg.read_text(encoding="utf-8").replace("<svg ", '<svg xml:space="preserve" ', 1)
    subprocess.run(
        [converter, "-w", str(PNG_WIDTH), "-o", str(png)],
        input=document.encode(),
        check=True,
        timeout=120,
    )
    return png


def missing_font() -> bool:
    """True if no installed font draws the control pictures (␛ U+241B, ␇ U+2407)."""
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return False  # cannot tell
    found = subprocess.run(
        [fc_list, ":charset=241b 2407", "family"], capture_output=True, text=True, timeout=30
    )
    return not found.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "names", nargs="*", help=f"pictures to make (default: all): {', '.join(BY_NAME)}"
    )
    parser.add_argument("--out", type=Path, default=HERE, help="directory (default: screenshots/)")
    parser.add_argument("--svg-only", action="store_true", help="no PNGs")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BY_NAME]
    if unknown:
        parser.error(f"unknown picture(s): {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    chosen = [BY_NAME[name] for name in args.names] if args.names else list(PICTURES)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    converter = None if args.svg_only else shutil.which("rsvg-convert")
    with tempfile.TemporaryDirectory(prefix="switchboard-screenshots-") as work:
        drawn = asyncio.run(make(chosen, Path(work)))
    for name, document in drawn.items():
        svg = out / f"{name}.svg"
        svg.write_text(document, encoding="utf-8")
        made = [svg] + ([to_png(svg, converter)] if converter else [])
        print("  ".join(str(path) for path in made))
    if not args.svg_only and converter is None:
        print("rsvg-convert not found: kept the SVGs only (Debian: apt-get install librsvg2-bin).")
    if not args.svg_only and missing_font():
        print(
            "No installed font has the control pictures (␛, ␇): the PNGs show empty boxes "
            "where hostile text had escape sequences (Debian: apt-get install fonts-freefont-ttf)."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
