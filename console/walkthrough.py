"""`switchboard walkthrough`: a crash and restart, narrated (no console needed).

It writes nine conversations in every interesting state to a throwaway store, leaves the
first boot without a clean stop (as SIGKILL would), boots again, runs the real recovery pass
and shows what it decided for each session, and what each gate would have done instead.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from gateway_core.clock import SystemClock
from gateway_core.model import Gate, MessageKind, NewMessage, Origin, Role, SessionKey, ToolCall
from gateway_core.recovery import RecoveryPolicy
from gateway_core.recovery.startup import BootRecovery, recover_at_boot, scan
from gateway_core.store import DATABASE_NAME, Store

MIN = 60.0
NOTE = MessageKind.RECOVERY_NOTE
WEEK = 7 * 24 * 3600.0


@dataclass(frozen=True)
class Scene:
    user: str
    story: str
    rows: tuple[NewMessage, ...]
    origin: bool = True
    suspended: bool = False


def scenes(now: float) -> list[Scene]:
    def u(text: str, ago: float, kind: str = MessageKind.TEXT) -> NewMessage:
        return NewMessage(Role.USER, text, kind=kind, created_at=now - ago)

    def a(text: str, ago: float) -> NewMessage:
        return NewMessage(Role.ASSISTANT, text, finish_reason="stop", created_at=now - ago)

    def calls(ago: float, *tool_calls: ToolCall) -> NewMessage:
        return NewMessage(
            Role.ASSISTANT,
            "",
            tool_calls=tool_calls,
            finish_reason="tool_calls",
            created_at=now - ago,
        )

    def res(call_id: str, text: str, ago: float, kind: str = MessageKind.TEXT) -> NewMessage:
        return NewMessage(Role.TOOL, text, kind=kind, tool_call_id=call_id, created_at=now - ago)

    return [
        Scene(
            "ada",
            "asked for a summary; the gateway died before answering",
            (u("Summarise the Q3 report", 40),),
        ),
        Scene(
            "bob",
            "got his answer just before the crash",
            (u("Weather in Oslo?", 90), a("4 °C and rain.", 80)),
        ),
        Scene(
            "cy",
            "six-week-old install task; the restart re-stamped its marker",
            (
                u("pip install the new SDK", 6 * WEEK),
                calls(6 * WEEK - 5, ToolCall("c1", "terminal", '{"command": "pip install sdk"}')),
            ),
        ),
        Scene(
            "dee",
            "crashed in the middle of a deploy",
            (
                u("Deploy to production", 3 * MIN),
                calls(2 * MIN, ToolCall("d1", "terminal", '{"command": "./deploy.sh prod"}')),
            ),
        ),
        Scene(
            "eve",
            "the agent asked her a question; no reply in time",
            (
                u("Open a PR for the fix", 20 * MIN),
                calls(19 * MIN, ToolCall("q1", "clarify", '{"question": "Which branch?"}')),
                res("q1", "[no reply within 15 min]", 4 * MIN, MessageKind.CLARIFY_TIMEOUT),
            ),
        ),
        Scene(
            "fay",
            "an earlier resume was killed before it wrote anything",
            (
                u("Rebuild the search index", 3 * MIN),
                u("[System note: the previous turn was interrupted ...]", 2 * MIN, NOTE),
            ),
        ),
        Scene(
            "gus",
            "suspended by an operator last night",
            (u("Keep retrying the sync", 12 * MIN),),
            suspended=True,
        ),
        Scene(
            "hal",
            "a status check had its result recorded; no answer yet",
            (
                u("Is the build done?", 5 * MIN),
                calls(
                    5 * MIN - 2,
                    ToolCall("p1", "process", '{"action": "poll", "process_id": "proc_1"}'),
                ),
                res("p1", '{"state": "running"}', 5 * MIN - 3),
            ),
        ),
        Scene("ivy", "a session imported without an origin", (u("hello?", 30),), origin=False),
    ]


async def run_walkthrough(gate: Gate, state_dir: Path | None, keep: bool = False) -> int:
    """On `state_dir` (kept), or a temporary dir deleted at the end unless `keep`; the state
    path is printed only when it is kept."""
    console = Console()
    if state_dir is None and not keep:
        with tempfile.TemporaryDirectory(prefix="switchboard-demo-") as temporary:
            await _walk(console, gate, Path(temporary))
        return 0
    kept = state_dir or Path(tempfile.mkdtemp(prefix="switchboard-demo-"))
    await _walk(console, gate, kept)
    console.print(f"State kept in {kept}", markup=False, highlight=False)
    return 0


async def _walk(console: Console, gate: Gate, state_dir: Path) -> None:
    clock = SystemClock()
    policy = RecoveryPolicy(gate=gate)
    path = state_dir / DATABASE_NAME
    console.rule("[b]Switchboard demo[/b]: a crash and a restart")

    async with await Store.open(path, clock=clock) as store:
        crashed = await store.runs.begin(pid=os.getpid())
        sessions = {}
        for scene in scenes(clock.now()):
            key = SessionKey("loopback", scene.user)
            origin = Origin("loopback", scene.user, user_name=scene.user) if scene.origin else None
            session = await store.sessions.ensure(key, origin)
            await store.transcript.append(session.id, list(scene.rows))
            if scene.suspended:
                await store.recovery.suspend(session.id, "operator")
            else:
                # Every turn marks its session when it starts; a crash leaves the marks behind.
                await store.recovery.mark(session.id, "crash")
            sessions[session.id] = scene
        console.print(
            f"Boot #{crashed.id} wrote {len(sessions)} conversations and was killed "
            "(its run row has no clean stop)."
        )

        boot = await recover_at_boot(store, await store.runs.begin(pid=os.getpid()), policy)
        console.print(f"Boot #{boot.run.id} ran the recovery pass with gate [b]{gate}[/b].\n")
        console.print(_decisions_table(boot, sessions))
        console.print(await _gates_table(store, boot, sessions, clock.now()))
        console.print("The live console: switchboard demo")


def _decisions_table(boot: BootRecovery, scenes: dict[int, Scene]) -> Table:
    table = Table(title="What the restarted gateway decided", show_lines=True, expand=True)
    table.add_column("user", no_wrap=True)
    table.add_column("what happened", ratio=2)
    table.add_column("verdict", no_wrap=True)
    table.add_column("action", no_wrap=True)
    table.add_column("why", ratio=3)
    styles = {"resume": "green", "clear": "dim", "hold": "yellow", "wait": "cyan", "skip": "red"}
    for candidate in boot.candidates:
        scene = scenes[candidate.session.id]
        decision = candidate.decision
        table.add_row(
            Text(scene.user),
            Text(scene.story),
            Text(str(decision.verdict)),
            Text(str(decision.action), style=styles.get(str(decision.action), "")),
            Text(decision.explanation),
        )
    return table


async def _gates_table(
    store: Store, boot: BootRecovery, scenes: dict[int, Scene], now: float
) -> Table:
    """The same evidence under every gate (scan only reads; nothing more is written)."""
    table = Table(title="The same evidence under each gate")
    table.add_column("user")
    for gate in Gate:
        table.add_column(gate.value)
    # The records as they stood before this boot applied its decisions.
    records = [(c.record, c.session) for c in boot.candidates]
    by_gate = {
        gate: await scan(store, now, RecoveryPolicy(gate=gate), records=records) for gate in Gate
    }
    for row, candidate in enumerate(boot.candidates):
        cells = [Text(str(by_gate[gate][row].decision.action)) for gate in Gate]
        table.add_row(Text(scenes[candidate.session.id].user), *cells)
    return table
