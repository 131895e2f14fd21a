"""The control socket: the control API as JSON lines over a Unix socket (mode 0600).

Protocol, one JSON object per line each way:

    -> {"id": 1, "op": "hello", "read_only": false, "via": "web"}
    <- {"id": 1, "ok": true, "result": {"version": 1, "actor": "alice via web", ...}}
    -> {"id": 2, "op": "snapshot"}
    -> {"id": 3, "op": "act", "action": "approve", "targets": ["12"], "reason": null}
    -> {"id": 4, "op": "subscribe"}          then {"event": {"type": "TurnStarted", ...}} lines
    <- {"id": 9, "ok": false, "error": "unknown op 'x'"}

ops: hello, snapshot, transcript (session_id, limit), process_log (process_id, limit),
audit (limit), log_tail (limit), log_entries (after, limit), act (action, targets, reason,
timeout), subscribe.

Who acts is the connecting process's OS user, from the socket's peer credentials (never what
the client claims); a peer of another user is refused (the 0600 mode already keeps them out
unless they are root). A hello may add the client it comes through ("via": "web", one of
`Via`): the audit then records "alice via web". It is that same user's own declaration, so it
is kept beside the proven user, never instead of it; like read_only, a later hello cannot take
it back. A bad request gets an error line and the connection lives on; a line
longer than MAX_LINE is answered with an error and skipped. Writing never waits for a client:
one whose unread output stays above MAX_BUFFERED for STALL_SECONDS without shrinking, or that
lets HARD_LIMIT pile up at all, is dropped, so a stuck reader cannot slow the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import pwd
import socket
import stat
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway_core.control import ActionResult, Control, RestartHook, Via, actor_name
from gateway_core.gateway import Gateway
from gateway_core.log_ring import LogRing
from gateway_core.private_files import private_dir
from gateway_core.runtime import GatewayState
from gateway_core.session_listing import snapshot_with_stored_sessions
from gateway_core.snapshot import SESSION_ORDERS, SessionQuery
from gateway_core.wire import encode

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
MAX_LINE = 1 << 20
MAX_IN_FLIGHT = 8  # requests of one connection being worked on at once
MAX_BUFFERED = 4 << 20  # unread output past this must shrink within STALL_SECONDS
STALL_SECONDS = 5.0
HARD_LIMIT = 64 << 20


@dataclass(frozen=True, slots=True)
class Peer:
    pid: int
    uid: int
    gid: int

    @property
    def user(self) -> str:
        try:
            return pwd.getpwuid(self.uid).pw_name
        except KeyError:
            return f"uid {self.uid}"


def peer_of(sock: socket.socket) -> Peer | None:
    """The connecting process's credentials (Linux SO_PEERCRED)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return None
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, gid)


def peer_allowed(peer_uid: int, owner_uid: int) -> bool:
    """Only the gateway's own user (and root, who can open the 0600 socket anyway)."""
    return peer_uid in (owner_uid, 0)


class ControlServer:
    def __init__(
        self,
        gateway: Gateway,
        path: Path,
        *,
        log_ring: LogRing | None = None,
        restart_hook: RestartHook | None = None,
        owner_uid: int | None = None,
    ) -> None:
        self._gateway = gateway
        self.path = path
        self._ring = log_ring
        self._restart_hook = restart_hook
        self._owner = os.getuid() if owner_uid is None else owner_uid
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._inode: int | None = None

    async def start(self) -> None:
        private_dir(self.path.parent)
        self._clear_stale_socket()
        # Mode 0600 is set on the socket before bind() (Linux honours it there), so there is
        # no window in which the path is open to others, and the process umask is untouched.
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            os.fchmod(sock.fileno(), 0o600)
            sock.bind(str(self.path))
            self._inode = os.stat(self.path).st_ino
            self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_LINE)
        except BaseException:
            sock.close()
            raise
        log.info("control socket listening", extra={"event": "control_listening"})

    def _clear_stale_socket(self) -> None:
        """Remove a socket a killed gateway left behind, and nothing else: not a file that is
        not a socket, and not the live socket of another gateway."""
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise OSError(f"{self.path} exists and is not a socket; refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self.path))
        except ConnectionRefusedError:
            self.path.unlink()  # nobody listens: left by a gateway that died
            return
        finally:
            probe.close()
        raise OSError(f"{self.path}: another gateway is listening there already")

    async def close(self, flush_within: float = 1.0) -> None:
        if self._server is not None:
            self._server.close()
        await asyncio.gather(
            *(connection.close(flush_within) for connection in list(self._connections))
        )
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), flush_within + 1.0)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            if os.lstat(self.path).st_ino == self._inode:  # ours, not a successor's
                self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = peer_of(writer.get_extra_info("socket"))
        if peer is None or not peer_allowed(peer.uid, self._owner):
            who = "unknown peer" if peer is None else f"uid {peer.uid}"
            log.warning("control socket: refused %s", who)
            writer.write(_line({"ok": False, "error": "refused: not the gateway's user"}))
            with contextlib.suppress(ConnectionError):
                await asyncio.wait_for(writer.drain(), 1.0)
            writer.close()
            return
        connection = _Connection(self, reader, writer, peer)
        self._connections.add(connection)
        try:
            await connection.run()
        finally:
            self._connections.discard(connection)


class _Connection:
    def __init__(
        self,
        server: ControlServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: Peer,
    ) -> None:
        self._server = server
        self._reader, self._writer = reader, writer
        self._user = peer.user
        self._via: Via | None = None
        self.actor = peer.user
        self._control = Control(server._gateway, restart_hook=server._restart_hook)
        self._events: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._backlog_since: float | None = None
        self._closed = False

    async def run(self) -> None:
        skipping = False  # inside a line that was too long
        try:
            while not self._closed:
                try:
                    raw = await self._reader.readuntil(b"\n")
                except asyncio.LimitOverrunError as error:
                    # Longer than MAX_LINE: answer once, then discard it up to its newline.
                    await self._reader.readexactly(error.consumed)
                    if not skipping:
                        self.send({"ok": False, "error": f"request longer than {MAX_LINE} bytes"})
                    skipping = True
                    continue
                except asyncio.IncompleteReadError:
                    return  # the client finished writing (or left); answers still go out
                except ConnectionError:
                    return
                if skipping:
                    skipping = False  # this was the end of the long line
                    continue
                if raw.strip():
                    # Each request runs on its own (a drain does not hold up snapshots on the
                    # same connection), but only a few at a time: a client that floods us
                    # stops being read instead of piling up work.
                    await self._slots.acquire()
                    task = asyncio.create_task(self._handle(raw))
                    self._tasks.add(task)
                    task.add_done_callback(self._done)
        finally:
            await self.close(1.0)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def close(self, flush_within: float) -> None:
        if self._events is not None:
            self._events.cancel()
        if self._closed:
            for task in list(self._tasks):  # dropped: nobody will read the answers
                task.cancel()
        elif flush_within > 0 and self._tasks:
            # Answers still being worked out (a client that half-closed after asking, or the
            # drain that stopped us) go out first.
            await asyncio.wait(set(self._tasks), timeout=flush_within)
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer.drain(), max(flush_within, 0.01))
        transport = self._writer.transport
        if transport.get_write_buffer_size():
            transport.abort()  # it will not read what is left: do not wait for it
        else:
            self._writer.close()

    def send(self, message: dict[str, Any]) -> None:
        """Queue a line for the client, never waiting. A client that makes no progress with
        what it was sent for STALL_SECONDS, or lets HARD_LIMIT pile up, is cut off."""
        if self._closed:
            return
        transport = self._writer.transport
        if transport.is_closing():
            self._closed = True
            return
        buffered = transport.get_write_buffer_size()
        now = time.monotonic()
        if buffered <= MAX_BUFFERED:
            self._backlog_since = None
        elif self._backlog_since is None:
            self._backlog_since = now
        stalled = self._backlog_since is not None and now - self._backlog_since > STALL_SECONDS
        if stalled or buffered > HARD_LIMIT:
            log.warning("control socket: dropped %s, who stopped reading", self.actor)
            self._closed = True
            transport.abort()
            for task in list(self._tasks):
                task.cancel()
            return
        self._writer.write(_line(message))

    async def _handle(self, raw: bytes) -> None:
        if self._closed:
            return
        request_id: object = None
        try:
            request = json.loads(raw)
            if not isinstance(request, dict):
                raise _BadRequest("a request is a JSON object")
            request_id = request.get("id")
            op = request.get("op")
            handler = _OPS.get(op) if isinstance(op, str) else None
            if handler is None:
                raise _BadRequest(f"unknown op {op!r}; ops: {', '.join(sorted(_OPS))}")
            result = await handler(self, request)
        except (ValueError, _BadRequest) as error:  # json.JSONDecodeError is a ValueError
            self.send({"id": request_id, "ok": False, "error": str(error)[:300]})
            return
        except Exception as error:  # never let one request take the connection down
            log.exception("control socket: request failed")
            self.send({"id": request_id, "ok": False, "error": f"internal error: {error}"})
            return
        self.send({"id": request_id, "ok": True, "result": result})

    # -- ops ------------------------------------------------------------------------------

    async def _hello(self, request: dict[str, Any]) -> object:
        via = request.get("via")
        if via is not None:
            if via not in tuple(Via):
                raise _BadRequest(f"via must be one of {', '.join(Via)}")
            self._via = self._via or Via(via)
            self.actor = actor_name(self._user, self._via)
        if request.get("read_only") is True:
            self._control.read_only = True  # for this connection, from now on
        gateway = self._server._gateway
        return {
            "version": PROTOCOL_VERSION,
            "actor": self.actor,
            "read_only": self._control.read_only,
            "pid": os.getpid(),
            "state_dir": str(gateway.config.gateway.state_dir),
        }

    async def _snapshot(self, request: dict[str, Any]) -> object:
        """{"sessions": {"order", "text", "limit"}} selects the sessions sent (encoding 10,000
        of them would hold the gateway's loop for ~150 ms); without it, all are sent."""
        query = _session_query(request.get("sessions"))
        return encode(await snapshot_with_stored_sessions(self._server._gateway, query))

    async def _transcript(self, request: dict[str, Any]) -> object:
        gateway = self._server._gateway
        session_id = _int(request, "session_id")
        if gateway.state is GatewayState.STOPPED:
            return []
        return encode(await gateway.store.transcript.tail(session_id, _limit(request, 30)))

    async def _process_log(self, request: dict[str, Any]) -> object:
        gateway = self._server._gateway
        process_id = request.get("process_id")
        if not isinstance(process_id, str):
            raise _BadRequest("process_id must be a string")
        job = None if gateway.state is GatewayState.STOPPED else gateway.processes.get(process_id)
        return [] if job is None else job.output.tail(_limit(request, 200))

    async def _audit(self, request: dict[str, Any]) -> object:
        gateway = self._server._gateway
        if gateway.state is GatewayState.STOPPED:
            return []
        return encode(await gateway.store.audit.recent(_limit(request, 100)))

    async def _log_tail(self, request: dict[str, Any]) -> object:
        ring = self._server._ring
        return [] if ring is None else ring.tail(_limit(request, 200))

    async def _log_entries(self, request: dict[str, Any]) -> object:
        """{"after": seq, "limit": n}: the log's records numbered above `after`."""
        ring = self._server._ring
        after = request.get("after", 0)
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise _BadRequest("after must be a non-negative integer")
        return [] if ring is None else encode(ring.entries(after, _limit(request, 500)))

    async def _act(self, request: dict[str, Any]) -> object:
        action = request.get("action")
        targets = request.get("targets") or []
        reason = request.get("reason")
        timeout = request.get("timeout")
        if not isinstance(action, str):
            raise _BadRequest("action must be a string")
        if not isinstance(targets, list) or not all(isinstance(t, str | int) for t in targets):
            raise _BadRequest("targets must be a list of ids")
        if reason is not None and not isinstance(reason, str):
            raise _BadRequest("reason must be a string")
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout < 0
        ):
            raise _BadRequest("timeout must be a finite number of seconds, 0 or more")
        result: ActionResult = await self._control.perform(
            action,
            [str(t) for t in targets],
            actor=self.actor,
            reason=reason,
            timeout=None if timeout is None else float(timeout),
        )
        return encode(result)

    async def _subscribe(self, request: dict[str, Any]) -> object:
        if self._events is None:
            self._events = asyncio.create_task(self._forward_events())
        return {"subscribed": True}

    async def _forward_events(self) -> None:
        bus = self._server._gateway.events
        subscription = bus.subscribe()
        try:
            async for event in subscription:
                self.send({"event": {"type": type(event).__name__, **encode(event)}})
                if self._closed:
                    return
        finally:
            bus.unsubscribe(subscription)


Op = Callable[[_Connection, dict[str, Any]], Awaitable[object]]
_OPS: dict[str, Op] = {
    "hello": _Connection._hello,
    "snapshot": _Connection._snapshot,
    "transcript": _Connection._transcript,
    "process_log": _Connection._process_log,
    "audit": _Connection._audit,
    "log_tail": _Connection._log_tail,
    "log_entries": _Connection._log_entries,
    "act": _Connection._act,
    "subscribe": _Connection._subscribe,
}


class _BadRequest(Exception):
    pass


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False).encode() + b"\n"


def _session_query(raw: object) -> SessionQuery | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _BadRequest("sessions must be an object: order, text, limit")
    order, text, limit = raw.get("order", "busy"), raw.get("text", ""), raw.get("limit", 200)
    if order not in SESSION_ORDERS:
        raise _BadRequest(f"sessions.order must be one of {', '.join(SESSION_ORDERS)}")
    if not isinstance(text, str):
        raise _BadRequest("sessions.text must be a string")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise _BadRequest("sessions.limit must be a non-negative integer or null")
    return SessionQuery(order, text, limit)


def _int(request: dict[str, Any], key: str) -> int:
    value = request.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _BadRequest(f"{key} must be an integer")
    return value


def _limit(request: dict[str, Any], default: int) -> int:
    value = request.get("limit", default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000:
        raise _BadRequest("limit must be an integer from 1 to 10000")
    return value
