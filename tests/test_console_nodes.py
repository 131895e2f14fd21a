"""The console sees the cluster (issue 17, "Operators see the cluster"): the Nodes tab and the
Sessions tab's Node column, over real gateways. On SQLite the tab says the gateway runs
alone and the column is left out; on PostgreSQL every node of the shared store is listed,
this one marked, with its state, heartbeat age, sessions and intake, and in-process and
attached over the socket alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.app import ConsoleApp
from console.attach import SocketBackend
from gateway_core.clock import ManualClock
from gateway_core.model import NodeState, SessionKey
from gateway_core.service.control_server import ControlServer
from gateway_core.snapshot import NodeStatus
from gateway_core.store import Store
from gateway_core.wire import WireFormatError, decode_snapshot, encode
from tests.support.backends import Backend
from tests.support.console_pilot import (
    ConsolePilot,
    cell,
    label_text,
    open_console,
    show_tab,
    static_text,
    table,
    wait_until,
)
from tests.support.harness import Running, start_gateway

TTL = 15.0


async def say_hello(running: Running, name: str) -> int:
    user = running.adapter.user(name, name=name)
    await user.say("hello")
    await user.wait_for(1)
    (session_id,) = [
        lane.session.id for lane in running.gateway.lanes.all() if lane.session.key.chat_id == name
    ]
    return session_id


# -- one gateway, either backend -------------------------------------------------------------


@pytest.mark.both_backends
async def test_the_nodes_tab_shows_this_gateway_as_it_is(
    backend: Backend, running: Running
) -> None:
    session_id = await say_hello(running, "ada")
    async with open_console(running.gateway) as (app, pilot):
        await show_tab(app, pilot, "7", "nodes")
        title = label_text(app, "#nodes-title")
        nodes = table(app, "#node-table")
        if backend is Backend.SQLITE:
            # No node rows to invent: it says plainly that this gateway runs alone.
            assert title == "Nodes: this gateway only (SQLite)"
            assert "This gateway runs alone" in static_text(app, "#node-note")
            assert not nodes.display and nodes.keys == []
        else:
            node = running.gateway.runtime.node
            assert node is not None
            assert nodes.keys == [node.id]
            assert cell(app, "#node-table", node.id, "node") == f"{node.id} (this node)"
            assert cell(app, "#node-table", node.id, "state") == "running"
            assert cell(app, "#node-table", node.id, "sessions") == "1"
            assert title == f"Nodes: 1 (1 running); this one: {node.id}"

        await show_tab(app, pilot, "2", "sessions")
        sessions = table(app, "#session-table")
        if backend is Backend.SQLITE:
            assert "owner" not in sessions.widths  # every row would say the same
        else:
            assert "owner" in sessions.widths
            assert cell(app, "#session-table", str(session_id), "owner") == "this node"


# -- two nodes on one PostgreSQL --------------------------------------------------------------


async def other_nodes(dsn: str, clock: ManualClock) -> None:
    """A node that stopped beating a minute ago (lapsed) and one that drained and stopped,
    written as their own heartbeats would have written them; node-a holds the intake."""
    async with await Store.open_postgresql(dsn, clock=ManualClock(clock.now() - 60)) as past:
        await past.leases.heartbeat("node-c", "host-c", 4242, NodeState.RUNNING, TTL)
        await past.leases.heartbeat("node-d", "host-d", 4343, NodeState.STOPPED, TTL)
    async with await Store.open_postgresql(dsn, clock=clock) as now:
        assert await now.leases.acquire_intake("telegram", "node-a", TTL)


async def lease_new_session(dsn: str, clock: ManualClock, chat: str, node_id: str) -> None:
    """The loopback chat's session made before it speaks, its lease held by `node_id`."""
    async with await Store.open_postgresql(dsn, clock=clock) as store:
        session = await store.sessions.ensure(SessionKey("loopback", chat), None)
        await store.leases.acquire(session.id, node_id, TTL)


async def test_every_node_of_the_shared_store_is_listed_and_this_one_marked(
    dsn: str, tmp_path: Path, clock: ManualClock
) -> None:
    node_a = await start_gateway(tmp_path / "a", clock, gateway={"node_id": "node-a"})
    # ada's turn on node-a before node-b boots: a booting node picks up every open inbox
    # item, and could win ada's session from node-a's own intake.
    ada = await say_hello(node_a, "ada")
    node_b = await start_gateway(tmp_path / "b", clock, gateway={"node_id": "node-b"})
    # Any node may take an open item of a session nobody holds (node-a hears of bob's from
    # its wake-up, and now and then won the session: its reply then went out on node-a's
    # own adapter, which bob does not watch). Leased to node-b first, it is node-b's.
    await lease_new_session(dsn, clock, "bob", "node-b")
    bob = await say_hello(node_b, "bob")
    await other_nodes(dsn, clock)
    async with open_console(node_b.gateway) as (app, pilot):
        overview = static_text(app, "#overview-text")
        assert "node node-b, one of 4 (tab 7); turns, jobs and notifiers are this" in overview
        await show_tab(app, pilot, "7", "nodes")
        assert table(app, "#node-table").keys == ["node-b", "node-a", "node-c", "node-d"]

        def shown(node: str, column: str) -> str:
            return cell(app, "#node-table", node, column)

        assert shown("node-b", "node") == "node-b (this node)"
        assert shown("node-a", "node") == "node-a"
        assert [shown(n, "state") for n in ("node-b", "node-a", "node-c", "node-d")] == [
            "running", "running", "lapsed", "stopped",
        ]  # fmt: skip
        assert shown("node-a", "intake") == "telegram"
        assert shown("node-b", "intake") == "–"
        assert shown("node-a", "sessions") == "1" and shown("node-b", "sessions") == "1"
        assert shown("node-c", "sessions") == "0"
        assert shown("node-c", "heartbeat") == "1m00s ago"  # from the durable heartbeat time
        assert shown("node-c", "pid") == "4242" and shown("node-c", "host") == "host-c"
        title = label_text(app, "#nodes-title")
        assert title == "Nodes: 4 (2 running, 1 lapsed, 1 stopped); this one: node-b"

        await show_tab(app, pilot, "2", "sessions")
        assert cell(app, "#session-table", str(ada), "owner") == "node-a"
        assert cell(app, "#session-table", str(ada), "state") == "remote"
        assert cell(app, "#session-table", str(bob), "owner") == "this node"
        assert "1 run by other nodes" in label_text(app, "#sessions-title")


async def test_attached_over_the_socket_the_nodes_arrive_decoded(
    dsn: str, tmp_path: Path, clock: ManualClock
) -> None:
    node_a = await start_gateway(tmp_path / "a", clock, gateway={"node_id": "node-a"})
    # ada's turn on node-a before node-b boots: a booting node picks up every open inbox
    # item, and could win ada's session from node-a's own intake.
    ada = await say_hello(node_a, "ada")
    node_b = await start_gateway(tmp_path / "b", clock, gateway={"node_id": "node-b"})
    await other_nodes(dsn, clock)
    server = ControlServer(node_b.gateway, tmp_path / "b" / "control.sock")
    await server.start()
    backend = await SocketBackend.connect(server.path)
    try:
        snap = await backend.snapshot()
        assert snap.node_id == "node-b"
        states = {n.node_id: n.state for n in snap.nodes}
        assert states == {
            "node-a": NodeStatus.RUNNING,
            "node-b": NodeStatus.RUNNING,
            "node-c": NodeStatus.LAPSED,
            "node-d": NodeStatus.STOPPED,
        }
        assert all(type(state) is NodeStatus for state in states.values())
        (view,) = [v for v in snap.sessions if v.session_id == ada]
        assert view.owner == "node-a"

        app = ConsoleApp(backend, refresh_every=0.2, attached=True)
        async with app.run_test(size=(140, 45)) as pilot:
            pilot_: ConsolePilot = pilot
            await show_tab(app, pilot_, "7", "nodes")
            await wait_until(pilot_, lambda: len(table(app, "#node-table").keys) == 4, "nodes")
            assert cell(app, "#node-table", "node-b", "node") == "node-b (this node)"
    finally:
        await backend.close()
        await server.close()

    # A state this console does not know is an error, never shown as something it is not.
    wire = encode(snap)
    wire["nodes"][0]["state"] = "rebooting"
    with pytest.raises(WireFormatError, match="unknown NodeStatus 'rebooting'"):
        decode_snapshot(wire)
