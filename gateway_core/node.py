"""This gateway as one node of several on one PostgreSQL database: its name, its heartbeat.

On the PostgreSQL backend every run is a node: `gateway.node_id` (default host:pid), a row in
`nodes` renewed every third of `cluster.lease_ttl`, and the session leases it takes for its
turns (store/leases.py). The heartbeat renews only leases that have not lapsed: a node that
was paused past its TTL finds its leases free for others and, if one was taken, every
further write of that session's turn is refused by its epoch. When the run closes (after its
drain), its leases are released at once and its row says stopped, so another node answers
the next message of those sessions without waiting out the TTL.

On SQLite there is one process per file (the state lock), so there is no node: no rows, no
lease checks, nothing added to a turn's transactions.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway_core.clock import Clock
from gateway_core.config import Config, StoreBackend
from gateway_core.model import NodeState
from gateway_core.store import Store, StoreError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    host: str
    pid: int
    lease_ttl: float

    @classmethod
    def from_config(cls, config: Config) -> Node | None:
        """This run's node, or None on SQLite (one process per file, nothing to share)."""
        if config.store.backend is not StoreBackend.POSTGRESQL:
            return None
        host, pid = socket.gethostname(), os.getpid()
        node_id = config.gateway.node_id or f"{host}:{pid}"
        return cls(node_id, host, pid, config.cluster.lease_ttl)


class Heartbeat:
    def __init__(self, node: Node, store: Store, clock: Clock) -> None:
        self.node = node
        self._store = store
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        # Run after each beat: the run's take-over of sessions whose node stopped beating.
        self.after_beat: Callable[[], Awaitable[None]] | None = None

    async def beat(self, state: NodeState) -> int:
        node = self.node
        return await self._store.leases.heartbeat(
            node.id, node.host, node.pid, state, node.lease_ttl
        )

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._forever(), name="heartbeat")

    async def _forever(self) -> None:
        while True:
            await self._clock.sleep(self.node.lease_ttl / 3)
            try:
                await self.beat(NodeState.RUNNING)
                if self.after_beat is not None:
                    await self.after_beat()
            except StoreError as error:  # the next beat tries again; the TTL is the margin
                log.warning("heartbeat of node %s failed: %s", self.node.id, error)

    async def stop(self) -> None:
        """The run is closing: no more beats, every lease released, the row says stopped."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        released = await self._store.leases.release_all(self.node.id)
        await self.beat(NodeState.STOPPED)
        log.info("node %s stopped; released %d session lease(s)", self.node.id, released)
