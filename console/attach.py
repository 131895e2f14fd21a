"""The control socket's client: `switchboard attach` and the scripting commands use it.

`SocketBackend` is the console's `Backend` over the socket, so the same ConsoleApp runs
in-process or attached without knowing which. Leaving an attached console only closes the
connection; it never stops the gateway. When the gateway goes away (a restart that exits 75,
a drain, a crash) the backend knows at once (the socket closes), says so through its `link`,
reconnects with backoff and tells the console when it is live again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from console.link import Link
from gateway_core.control import ActionResult, Via
from gateway_core.log_ring import LogEntry
from gateway_core.model import AuditEntry, Message
from gateway_core.snapshot import SessionQuery, Snapshot
from gateway_core.wire import (
    decode_audit,
    decode_log_entry,
    decode_message,
    decode_result,
    decode_snapshot,
    encode,
)

MAX_LINE = 64 << 20  # a snapshot of 10,000 sessions is a few MB
REQUEST_TIMEOUT = 30.0
BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)  # seconds between reconnection tries, then every 8 s


class ControlError(Exception):
    """The gateway refused a request, or could not be reached."""


class ControlClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue(1000)
        self._reading = asyncio.create_task(self._read())
        self.hello: dict[str, Any] = {}
        self._on_close: list[Callable[[str], None]] = []

    def when_closed(self, callback: Callable[[str], None]) -> None:
        """Call `callback(why)` as soon as the connection ends (not when we close it)."""
        self._on_close.append(callback)

    @classmethod
    async def connect(
        cls, path: Path, *, read_only: bool = False, via: Via | None = None
    ) -> ControlClient:
        try:
            reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_LINE)
        except (FileNotFoundError, ConnectionRefusedError):
            raise ControlError(
                f"no gateway is listening on {path} (is `switchboard run` running?)"
            ) from None
        except PermissionError:
            raise ControlError(f"{path}: permission denied (the socket is 0600)") from None
        client = cls(reader, writer)
        try:
            hello: dict[str, Any] = {"read_only": read_only}
            if via is not None:
                hello["via"] = str(via)
            client.hello = await client.request("hello", **hello)
        except ControlError:
            await client.close()
            raise
        return client

    async def request(self, op: str, **params: Any) -> Any:
        if self._reading.done():
            raise ControlError("the connection to the gateway is closed")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self._writer.write(json.dumps({"id": request_id, "op": op, **params}).encode() + b"\n")
        try:
            await self._writer.drain()
            return await asyncio.wait_for(future, None if op == "act" else REQUEST_TIMEOUT)
        except (ConnectionError, TimeoutError) as error:
            raise ControlError(f"{op}: {type(error).__name__}") from None
        finally:
            self._pending.pop(request_id, None)

    async def close(self) -> None:
        self._on_close.clear()  # our own close is not news
        self._reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reading
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()

    async def _read(self) -> None:
        error = "the gateway closed the connection"
        try:
            while raw := await self._reader.readline():
                try:
                    message = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(message, dict):
                    continue
                if "event" in message:
                    if self.events.full():
                        self.events.get_nowait()  # keep the newest
                    self.events.put_nowait(message["event"])
                    continue
                future = self._pending.get(message.get("id"))  # type: ignore[arg-type]
                if future is None:
                    if message.get("ok") is False:  # refused before any request
                        error = str(message.get("error"))
                    continue
                if future.done():
                    continue
                if message.get("ok"):
                    future.set_result(message.get("result"))
                else:
                    future.set_exception(ControlError(str(message.get("error"))))
        except (ConnectionError, ValueError) as failure:
            error = f"connection lost: {failure}"
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ControlError(error))
            for callback in self._on_close:
                callback(error)


class SocketBackend:
    """The console's Backend, over the control socket; it reconnects (with `backoff`
    seconds between tries, the last one repeated) when it was given the socket's path."""

    def __init__(
        self,
        client: ControlClient,
        *,
        path: Path | None = None,
        backoff: Sequence[float] = BACKOFF,
        via: Via | None = None,
    ) -> None:
        self._client = client
        self._path = path
        self._via = via  # said again on every reconnection
        self._backoff = tuple(backoff) or BACKOFF
        self.read_only = bool(client.hello.get("read_only"))
        self.actor = str(client.hello.get("actor", "?"))
        self.link = Link()
        self._listeners: list[Callable[[], None]] = []
        self._reconnecting: asyncio.Task[None] | None = None
        client.when_closed(self._lost)

    @classmethod
    async def connect(
        cls,
        path: Path,
        *,
        read_only: bool = False,
        backoff: Sequence[float] = BACKOFF,
        via: Via | None = None,
    ) -> SocketBackend:
        client = await ControlClient.connect(path, read_only=read_only, via=via)
        return cls(client, path=path, backoff=backoff, via=via)

    def on_link_change(self, callback: Callable[[], None]) -> None:
        """Call `callback()` when the link is lost or comes back."""
        self._listeners.append(callback)

    def _changed(self) -> None:
        for callback in self._listeners:
            callback()

    def _lost(self, why: str) -> None:
        self.link = Link(connected=False, lost_at=time.time(), why=why)
        self._changed()
        if self._path is not None and self._reconnecting is None:
            self._reconnecting = asyncio.get_running_loop().create_task(
                self._reconnect(self._path), name="console-reconnect"
            )

    async def _reconnect(self, path: Path) -> None:
        try:
            for attempt in itertools.count():
                delay = self._backoff[min(attempt, len(self._backoff) - 1)]
                self.link.next_try_at = time.time() + delay
                await asyncio.sleep(delay)
                try:
                    client = await ControlClient.connect(
                        path, read_only=self.read_only, via=self._via
                    )
                except ControlError as error:
                    self.link.why = str(error)
                    continue
                lost, self._client = self._client, client
                await lost.close()  # its transport, which ended without us
                self.actor = str(client.hello.get("actor", self.actor))
                client.when_closed(self._lost)
                self.link = Link()
                self._changed()
                return
        finally:
            self._reconnecting = None

    async def close(self) -> None:
        self._listeners.clear()
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
        await self._client.close()

    async def snapshot(self, query: SessionQuery | None = None) -> Snapshot:
        params = {} if query is None else {"sessions": encode(query)}
        return decode_snapshot(await self._client.request("snapshot", **params))

    async def transcript_tail(self, session_id: int, limit: int = 30) -> list[Message]:
        rows = await self._client.request("transcript", session_id=session_id, limit=limit)
        return [decode_message(row) for row in rows]

    async def process_log(self, process_id: str, limit: int = 200) -> list[str]:
        lines = await self._client.request("process_log", process_id=process_id, limit=limit)
        return [str(line) for line in lines]

    async def audit_tail(self, limit: int = 100) -> list[AuditEntry]:
        rows = await self._client.request("audit", limit=limit)
        return [decode_audit(row) for row in rows]

    async def log_tail(self, limit: int = 200) -> list[str]:
        return [str(line) for line in await self._client.request("log_tail", limit=limit)]

    async def log_entries(self, after: int = 0, limit: int = 500) -> list[LogEntry]:
        rows = await self._client.request("log_entries", after=after, limit=limit)
        return [decode_log_entry(row) for row in rows]

    async def act(
        self,
        action: str,
        targets: Sequence[str] = (),
        *,
        reason: str | None = None,
        timeout: float | None = None,
    ) -> ActionResult:
        result = await self._client.request(
            "act", action=action, targets=list(targets), reason=reason, timeout=timeout
        )
        return decode_result(result)
