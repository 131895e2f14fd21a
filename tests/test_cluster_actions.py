"""Operator actions on another node's session (issue 17, "Operators see the cluster"): two
real gateways on one PostgreSQL, node-a owning a held candidate and a running turn, acted on
from node-b in-process, over its control socket with the CLI's own code, and from its console.
Each action is either the owner's to take (refused here, naming the owner) or a durable
change in the shared store; nothing is accepted here and then silently dropped."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from console.ops import run_op
from console.tabs.recovery import RecoveryTab
from console.tabs.sessions import SessionsTab
from gateway_core.clock import ManualClock
from gateway_core.control import Action, Control
from gateway_core.model import Origin, RecoveryState, SessionKey
from gateway_core.service.control_server import ControlServer
from gateway_core.store import Store
from tests.support.console_pilot import focus_row, open_console, show_tab, static_text, table
from tests.support.harness import Running, start_gateway
from tests.support.transcripts import asks, call, user


async def crash_into(dsn: str, clock: ManualClock, chat: str) -> int:
    """A conversation a crashed node left during a deploy (held at the next boot)."""
    now = clock.now()
    async with await Store.open_postgresql(dsn, clock=clock) as store:
        session = await store.sessions.ensure(
            SessionKey("loopback", chat), Origin("loopback", chat, user_name=chat)
        )
        rows = [user("deploy", now), asks(call("terminal", "t1", command="./deploy.sh"), at=now)]
        await store.transcript.append(session.id, rows)
        assert await store.recovery.mark(session.id, "crash")
    return session.id


@dataclass
class Pair:
    a: Running
    b: Running
    held: int  # node-a's held candidate
    busy: int  # node-a's session with a turn running (a 100 s tool call)


@pytest.fixture
async def pair(dsn: str, tmp_path: Path, clock: ManualClock) -> AsyncIterator[Pair]:
    held = await crash_into(dsn, clock, "ada")
    node_a = await start_gateway(tmp_path / "a", clock, gateway={"node_id": "node-a"})
    await node_a.adapter.user("bob").say('tool sleep {"seconds": 100}')
    await clock.wait_for_deadline(clock.monotonic() + 100)  # the turn is in its tool call
    (lane,) = node_a.gateway.lanes.running()
    # Only now node-b: started beside node-a's intake, its pickup could win bob's session
    # (whichever node starts the turn first takes the lease), and the test needs node-a's.
    node_b = await start_gateway(tmp_path / "b", clock, gateway={"node_id": "node-b"})
    yield Pair(node_a, node_b, held, lane.session.id)


async def test_the_owner_is_refused_elsewhere_for_each_action_that_needs_it(pair: Pair) -> None:
    store = pair.b.gateway.store
    assert await store.owners.of_sessions([pair.held, pair.busy]) == {
        pair.held: "node-a",
        pair.busy: "node-a",
    }
    control = Control(pair.b.gateway)
    for action, target in (
        (Action.APPROVE, pair.held),
        (Action.FORCE_RESUME, pair.held),
        (Action.CLEAR, pair.held),
        (Action.INTERRUPT, pair.busy),
    ):
        result = await control.perform(action, [str(target)], actor="tester", reason="she needs it")
        assert not result.ok, (action, result)
        assert result.message == (
            f"session {target} is owned by node node-a; attach to that node to {action} it"
        )
    # Nothing happened: the candidate is still held, node-a's turn still runs, and node-b
    # queued no resume (its lane for the session, had it made one, would be busy).
    record = await store.recovery.get(pair.held)
    assert record is not None and record.state is RecoveryState.HELD
    assert [lane.session.id for lane in pair.a.gateway.lanes.running()] == [pair.busy]
    assert pair.b.gateway.lanes.running() == []
    refused = [e for e in await store.audit.recent(10) if e.outcome == "refused"]
    assert len(refused) == 4  # each refusal is audited, with its reason


async def test_on_the_owner_the_same_approve_runs(pair: Pair) -> None:
    result = await Control(pair.a.gateway).approve(pair.held, actor="tester")
    assert result.ok, result


async def test_a_suspend_from_another_node_is_a_durable_change_the_owner_keeps(
    pair: Pair,
) -> None:
    result = await Control(pair.b.gateway).suspend(pair.held, actor="tester", reason="later")
    assert result.ok, result
    # The owner's approve now finds it suspended, from the shared store.
    refused = await Control(pair.a.gateway).approve(pair.held, actor="tester")
    assert not refused.ok and "not held (state suspended)" in refused.message


async def test_the_cli_over_the_socket_says_the_same(
    pair: Pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = ControlServer(pair.b.gateway, tmp_path / "b" / "control.sock")
    await server.start()
    try:
        listed = await run_op(
            server.path, "recovery-list", as_json=True, targets=[], reason=None, timeout=None
        )
        listing = json.loads(capsys.readouterr().out)
        table = await run_op(
            server.path, "recovery-list", as_json=False, targets=[], reason=None, timeout=None
        )
        shown = capsys.readouterr().out
        code = await run_op(
            server.path, "approve", as_json=False, targets=[str(pair.held)], reason=None,
            timeout=None,
        )  # fmt: skip
    finally:
        await server.close()
    # `recovery list` says whose each candidate is, so the operator knows where to attach.
    assert listed == 0 and [(c["id"], c["owner"]) for c in listing] == [(pair.held, "node-a")]
    assert table == 0 and "node" in shown.splitlines()[1] and "node-a" in shown
    assert code == 1
    err = capsys.readouterr().err
    assert err == (
        f"switchboard: approve refused: session {pair.held} is owned by node node-a;"
        " attach to that node to approve it\n"
    )


async def test_the_console_of_another_node_offers_no_owner_action_and_says_why(
    pair: Pair,
) -> None:
    async with open_console(pair.b.gateway) as (app, pilot):
        await show_tab(app, pilot, "3", "recovery")
        recovery = app.query_one(RecoveryTab)
        await focus_row(pilot, table(app, "#candidate-table"), str(pair.held))
        reason = recovery.why_not("approve")
        assert reason == f"session {pair.held} is owned by node node-a; attach to that node"
        assert recovery.why_not("clear") == reason
        assert not app.offers("approve") and not app.offers("force_resume")
        assert "owned by node node-a" in static_text(app, "#candidate-detail")

        await show_tab(app, pilot, "2", "sessions")
        sessions = app.query_one(SessionsTab)
        await focus_row(pilot, table(app, "#session-table"), str(pair.busy))
        assert sessions.why_not("interrupt") == (
            f"session {pair.busy} is owned by node node-a; attach to that node"
        )


async def test_a_resend_of_another_nodes_reply_is_refused_and_the_reply_left_unknown(
    pair: Pair,
) -> None:
    store = pair.b.gateway.store
    item = await store.outbox.enqueue(pair.busy, 1, "answer", "the deploy is done")
    await store.outbox.mark_unknown(item, "the node died while sending it")
    result = await Control(pair.b.gateway).resend(item, actor="tester")
    assert not result.ok
    assert f"session {pair.busy} is owned by node node-a" in result.message
    # Requeued here it would wait for a delivery claim only node-a may make.
    stored = await store.outbox.get(item)
    assert stored is not None and stored.status == "unknown"


async def test_a_kill_of_a_job_this_node_does_not_run_says_where_jobs_run(pair: Pair) -> None:
    result = await Control(pair.b.gateway).kill_process("proc_0123456789ab", actor="tester")
    assert not result.ok
    assert result.message.startswith("no process proc_0123456789ab on node node-b;")
    assert "attach to that node" in result.message
