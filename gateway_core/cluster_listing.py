"""The cluster as a snapshot shows it: every node of the shared store, and who owns what.

On PostgreSQL every run is a node (node.py). The console's Nodes tab, `switchboard nodes` and
the owner of each session and candidate all come from here, read from the shared store at
each snapshot (three small reads, and one for the owners of the sessions shown), so every
node's console shows the same cluster. What only a node's own process knows (its lanes, its
jobs) stays that node's. On SQLite there is no node: the snapshot is left as it was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from gateway_core.model import NodeRecord, NodeState
from gateway_core.node import Node
from gateway_core.snapshot import NodeStatus, NodeView, Snapshot
from gateway_core.store import Store


def node_status(record: NodeRecord, now: float, ttl: float) -> NodeStatus:
    """A node that did not stop but has not beaten within the TTL has lost its leases."""
    if record.state is NodeState.STOPPED:
        return NodeStatus.STOPPED
    if now - record.heartbeat_at > ttl:
        return NodeStatus.LAPSED
    return NodeStatus(record.state.value)


def node_views(
    records: Sequence[NodeRecord],
    owned: Mapping[str, int],
    intake: Mapping[str, str],
    now: float,
    ttl: float,
) -> tuple[NodeView, ...]:
    return tuple(
        NodeView(
            node_id=record.id,
            host=record.host,
            pid=record.pid,
            state=node_status(record, now, ttl),
            started_at=record.started_at,
            heartbeat_at=record.heartbeat_at,
            sessions=owned.get(record.id, 0),
            intake=tuple(sorted(name for name, holder in intake.items() if holder == record.id)),
        )
        for record in records
    )


async def read_nodes(store: Store, now: float, ttl: float) -> tuple[NodeView, ...]:
    records = await store.leases.nodes()
    owned = await store.leases.sessions_owned()
    intake = await store.leases.intake_holders()
    return node_views(records, owned, intake, now, ttl)


async def with_cluster(snap: Snapshot, store: Store, node: Node | None) -> Snapshot:
    """The snapshot with the nodes and the owner of each session and candidate shown."""
    if node is None:
        return snap
    nodes = await read_nodes(store, snap.taken_at, node.lease_ttl)
    ids = [view.session_id for view in snap.sessions]
    ids += [view.session_id for view in snap.candidates]
    owners = await store.owners.of_sessions(ids)
    sessions = tuple(replace(v, owner=owners.get(v.session_id)) for v in snap.sessions)
    candidates = tuple(replace(c, owner=owners.get(c.session_id)) for c in snap.candidates)
    return replace(snap, node_id=node.id, nodes=nodes, sessions=sessions, candidates=candidates)
