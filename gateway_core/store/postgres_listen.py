"""LISTEN on PostgreSQL: each notification's payload is handed on, so a node wakes at once.

One dedicated autocommit connection (a pooled one could be handed to a query mid-wait).
If it fails the notifications simply stop: the caller polls as well (bounded), so a lost
listener costs latency, never a message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import psycopg

from gateway_core.store.postgres_connect import describe, masked

log = logging.getLogger(__name__)


class Wakeups:
    def __init__(self, dsn: str, channel: str, on_notify: Callable[[str], None]) -> None:
        self._dsn = dsn
        self._channel = channel
        self._on_notify = on_notify
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            self._connection = await psycopg.AsyncConnection.connect(
                self._dsn, autocommit=True, application_name="switchboard-listen"
            )
            await self._connection.execute(f"LISTEN {self._channel}")
        except psycopg.Error as error:
            log.warning(
                "%s: cannot listen for %s (polling only): %s",
                describe(self._dsn),
                self._channel,
                masked(self._dsn, str(error)),
            )
            return
        self._task = asyncio.get_running_loop().create_task(self._read(), name="store-listen")

    async def _read(self) -> None:
        connection = self._connection
        assert connection is not None
        try:
            async for notification in connection.notifies():
                self._on_notify(notification.payload)
        except psycopg.Error as error:
            log.warning("%s: listening stopped (polling only): %s", describe(self._dsn), error)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._connection is not None:
            await self._connection.close()
