"""A snapshot whose sessions come from the store, for the console and the control socket.

`Gateway.snapshot()` knows only this run's lanes: after a restart a conversation has no lane
until it speaks again, so a view built from lanes alone lost most sessions. Here the counts
cover every stored session, and the sessions a query asks for are the store's, with this
run's live state (running, queued) laid over them. Two or three indexed reads; the rest of
the snapshot stays the in-memory one. On a node (PostgreSQL) the cluster is added from the
shared store too: every node, and the owner of each session and candidate shown.
"""

from __future__ import annotations

from dataclasses import replace

from gateway_core.cluster_listing import with_cluster
from gateway_core.gateway import Gateway
from gateway_core.runtime import GatewayState
from gateway_core.snapshot import SessionQuery, Snapshot, merge_sessions, with_sessions


async def snapshot_with_stored_sessions(gateway: Gateway, query: SessionQuery | None) -> Snapshot:
    snap = gateway.snapshot()
    if gateway.state is GatewayState.STOPPED:
        return with_sessions(snap, query)  # no store to read: what the lanes knew
    store = gateway.store
    sessions = store.sessions
    counts = replace(snap.counts, sessions=await sessions.count())
    query = query or SessionQuery(limit=None)
    if query.text:
        counts = replace(counts, sessions_matching=await sessions.count_matching(query.text))
    if query.limit == 0:
        snap = replace(snap, sessions=(), counts=counts)
    else:
        stored = await sessions.search(query.text, query.order, query.limit)
        merged = merge_sessions(snap.sessions, stored, query)
        snap = replace(snap, sessions=merged, counts=counts)
    return await with_cluster(snap, store, gateway.runtime.node)
