"""`switchboard nodes`: the nodes sharing this gateway's PostgreSQL database, from the store.

Read from the shared store, not from any one node's socket, so it works from any machine
with the config and the DSN variable, and shows dead nodes too (their heartbeat ages).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from console.cli_tables import print_table
from gateway_core.clock import SystemClock
from gateway_core.cluster_listing import read_nodes
from gateway_core.config import Config, StoreBackend
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
        # The same reading as the console's Nodes tab (a node is lapsed past the TTL).
        nodes = await read_nodes(store, clock.now(), config.cluster.lease_ttl)
    now = clock.now()
    rows = [
        (node, node.state.value, round(max(0.0, now - node.heartbeat_at), 1), node.sessions,
         list(node.intake))
        for node in nodes
    ]  # fmt: skip
    if as_json:
        listing = [
            {
                "node": node.node_id,
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
                node.node_id, node.host, str(node.pid), state, f"{age} s ago", str(sessions),
                ", ".join(intakes) or "-",
            ]
            for node, state, age, sessions, intakes in rows
        ],
        right=["pid", "sessions"],
    )  # fmt: skip
    return 0
