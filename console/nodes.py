"""`switchboard nodes`: the nodes sharing this gateway's PostgreSQL database, from the store.

Read from the shared store, not from any one node's socket, so it works from any machine
with the config and the DSN variable, and shows dead nodes too (their heartbeat ages).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from console.cli_tables import print_table
from gateway_core.clock import SystemClock
from gateway_core.config import Config, StoreBackend
from gateway_core.model import NodeState
from gateway_core.store import Store
from gateway_core.store_choice import store_dsn


async def show_nodes(config: Config, env: Mapping[str, str], *, as_json: bool) -> int:
    if config.store.backend is not StoreBackend.POSTGRESQL:
        if as_json:
            print("[]")
        else:
            print("store.backend is sqlite: one gateway per state directory, no nodes to list")
        return 0
    dsn = store_dsn(config, env)
    assert dsn is not None
    clock = SystemClock()
    async with await Store.open_postgresql(dsn, clock=clock, read_connections=1) as store:
        nodes = await store.leases.nodes()
        owned = await store.leases.sessions_owned()
        intake = await store.leases.intake_holders()
    now = clock.now()
    ttl = config.cluster.lease_ttl
    rows = []
    for node in nodes:
        age = max(0.0, now - node.heartbeat_at)
        # A running node whose heartbeat is older than the TTL has lost its leases.
        lapsed = node.state is NodeState.RUNNING and age > ttl
        intakes = sorted(name for name, holder in intake.items() if holder == node.id)
        state = "lapsed" if lapsed else node.state.value
        rows.append((node, state, round(age, 1), owned.get(node.id, 0), intakes))
    if as_json:
        listing = [
            {
                "node": node.id,
                "host": node.host,
                "pid": node.pid,
                "state": state,
                "heartbeat_age": age,
                "sessions": sessions,
                "intake": intakes,
            }
            for node, state, age, sessions, intakes in rows
        ]
        print(json.dumps(listing, indent=2))
        return 0
    print_table(
        f"{len(rows)} node(s) on {store.where}",
        ["node", "host", "pid", "state", "heartbeat", "sessions", "intake"],
        [
            [
                node.id, node.host, str(node.pid), state, f"{age} s ago", str(sessions),
                ", ".join(intakes) or "-",
            ]
            for node, state, age, sessions, intakes in rows
        ],
        right=["pid", "sessions"],
    )  # fmt: skip
    return 0
