"""A real gateway node on PostgreSQL taking over the sessions of a node that died on another
machine, through its heartbeat (no test code between the lapse and the decision): the dead
node's job that was still running there is never looked up or signalled by its PID here, its
tool call is held as unknown with the reason, and the user is told once; a job whose exit
that node had recorded settles its call, and the session is resumed and answered."""

from __future__ import annotations

from pathlib import Path

import psutil

from gateway_core.clock import ManualClock
from gateway_core.events import RecoveryDecided
from gateway_core.model import (
    JobRecord,
    Origin,
    ProcessState,
    RecoveryState,
    Session,
    SessionKey,
    TurnKind,
)
from gateway_core.store import Store
from gateway_core.store.sessions import start_turn_row
from gateway_core.store.transaction import Transaction
from gateway_core.store.turns import begin_row
from tests.support.harness import next_event, start_gateway
from tests.support.transcripts import asks, call, user

TTL = 15.0


async def _left_by_dead_node(
    store: Store, chat: str, command: str, job: dict[str, object]
) -> Session:
    """What node-a, on machine gone-host, left when it died: a turn running a `terminal`
    call, the job that call started, its lease."""
    now = store.clock.now()
    session = await store.sessions.ensure(
        SessionKey("loopback", chat), Origin("loopback", chat, user_id=chat, user_name=chat)
    )
    await store.transcript.append(
        session.id,
        [user(command, now), asks(call("terminal", f"c-{chat}", command=command), at=now)],
    )

    def turn(db: Transaction) -> None:
        generation = start_turn_row(db, session.id, now)
        begin_row(db, session.id, generation, TurnKind.MESSAGE, None, now)

    await store.write(turn)
    await store.leases.acquire(session.id, "node-a", TTL)
    await store.processes.save(
        JobRecord(
            id=f"job-{chat}", session_id=session.id, generation=1, command=command, cwd=None,
            pid=job.get("pid"), pid_started_at=job.get("started"),  # type: ignore[arg-type]
            notify_on_complete=False, watch_patterns=(), log_path=None,
            state=job.get("state", ProcessState.RUNNING),  # type: ignore[arg-type]
            exit_code=job.get("exit_code"),  # type: ignore[arg-type]
            end_reason=None, consumed=False, started_at=now, tool_call_id=f"c-{chat}",
            host="gone-host", node="node-a",
        )
    )  # fmt: skip
    return session


async def test_a_survivor_holds_the_call_of_a_job_on_the_dead_machine_and_settles_the_other(
    dsn: str, tmp_path: Path, clock: ManualClock, live_process: psutil.Process
) -> None:
    running = await start_gateway(
        tmp_path / "b", clock, gateway={"node_id": "node-b"}, cluster={"lease_ttl": TTL}
    )
    gateway = running.gateway
    decided = gateway.events.subscribe()
    async with await Store.open_postgresql(dsn, clock=clock) as node_a:
        deploy = await _left_by_dead_node(
            node_a,
            "ada",
            "deploy",
            {"pid": live_process.pid, "started": live_process.create_time()},
        )
        tests = await _left_by_dead_node(
            node_a, "bob", "run the tests", {"state": ProcessState.EXITED, "exit_code": 0}
        )
    clock.advance(TTL + 1)  # node-a's leases lapse; node-b's next heartbeat takes over
    verdicts = {}
    for _ in range(2):
        event = await next_event(decided, RecoveryDecided)
        verdicts[event.session_id] = (event.verdict, event.action, event.explanation)
    verdict, action, explanation = verdicts[deploy.id]
    assert (verdict, action) == ("ambiguous-tool", "hold")
    assert "ran on host gone-host (node node-a), which is gone" in explanation
    assert verdicts[tests.id][:2] == ("resumable", "resume")
    # The live process that shares the dead job's PID was never taken for it, nor signalled.
    assert live_process.is_running() and live_process.status() != psutil.STATUS_ZOMBIE
    job = await gateway.store.processes.get("job-ada")
    assert job is not None and job.state is ProcessState.LOST
    # ada is told once that an operator will review it; bob's request is resumed and answered.
    ada, bob = running.adapter.user("ada"), running.adapter.user("bob")
    (told,) = [m.text for m in await ada.wait_for(1)]
    assert "operator will review" in told
    (answered,) = [m.text for m in await bob.wait_for(1)]
    assert answered == "Back after a restart. You had asked: 'run the tests'"
    record = await gateway.store.recovery.get(deploy.id)
    assert record is not None and record.state == RecoveryState.HELD
    # The operator sees the held session with the takeover's decision, as a boot's.
    (view,) = [c for c in gateway.snapshot().candidates if c.session_id == deploy.id]
    assert (view.state, view.action) == (RecoveryState.HELD, "hold")
    lease = await gateway.store.leases.of_session(deploy.id)
    assert lease is not None and lease.owner == "node-b"
    await running.stop()
