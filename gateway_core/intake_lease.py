"""On a node: a platform that allows one consumer of its updates is polled by one node.

Telegram lets one getUpdates consumer per bot poll (a second gets 409 Conflict). Each node
tries to take the platform's intake lease every third of `cluster.lease_ttl` (the holder's
try renews it); the holder starts the adapter's intake, a node that finds the lease taken
from it stops its own. When the holder dies its lease lapses and another node takes it over
within the TTL; when it drains it releases the lease at once. Updates are committed to the
shared inbox by whoever polls, deduplicated by platform id (a takeover may see an update
again), and picked up by each session's owner (inbox_pickup.py).

Adapters whose updates reach any node (webhooks, the loopback adapter) start as on one node.
"""

from __future__ import annotations

import asyncio
import logging

from gateway_core.adapters.base import Adapter, IntakeSink
from gateway_core.node import Node
from gateway_core.runtime import Runtime
from gateway_core.store import StoreError

log = logging.getLogger(__name__)


class IntakeKeeper:
    def __init__(self, runtime: Runtime, node: Node, adapter: Adapter, sink: IntakeSink) -> None:
        self._rt = runtime
        self._node = node
        self._adapter = adapter
        self._sink = sink
        self.polling = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._forever(), name=f"intake-lease-{self._adapter.platform}"
        )

    async def _forever(self) -> None:
        leases, name, node = self._rt.store.leases, self._adapter.platform, self._node
        while not self._rt.draining:
            try:
                held = await leases.acquire_intake(name, node.id, node.lease_ttl)
            except StoreError as error:
                log.warning("intake lease of %s not renewed: %s", name, error)
                held = False
            if self._rt.draining:  # the drain stops intake; it must not start again
                return
            if held and not self.polling:
                log.info("node %s took the %s intake lease: polling", node.id, name)
                await self._adapter.start_intake(self._sink)
                self.polling = True
            elif not held and self.polling:
                log.warning("node %s lost the %s intake lease: polling stops", node.id, name)
                await self._adapter.stop_intake()
                self.polling = False
            await self._rt.clock.sleep(node.lease_ttl / 3)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
