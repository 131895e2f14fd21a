"""One HTTP listener on aiohttp: a TCP host:port or a Unix socket path.

The gateway serves its probes, its metrics and the Telegram webhook through listeners of this
kind (gateway_core/service/http_surface.py decides which routes go where). Handlers are plain
coroutines on the gateway's event loop: none of them does blocking work (the store probe waits
on the writer thread, the metrics text is a few dozen series).

A Unix socket is made mode 0660 (a reverse proxy in the gateway's group may connect; nobody
else): created 0600 before bind, so it is never wider than that, then opened to the group. Only
a dead socket left by a killed gateway is replaced.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
from pathlib import Path

from aiohttp import web

from gateway_core.config import ListenAddress

log = logging.getLogger(__name__)

SOCKET_MODE = 0o660
# Requests still running when the listener closes get this long to finish.
SHUTDOWN_SECONDS = 2.0


class HttpListenError(OSError):
    """The listener could not bind; one line naming the setting and the address."""


class HttpListener:
    def __init__(self, address: ListenAddress, app: web.Application, *, setting: str) -> None:
        self.address = address
        self._app = app
        self._setting = setting  # named in errors and logs, e.g. "http.listen"
        self._runner: web.AppRunner | None = None
        self._socket_path: Path | None = None
        self._inode: int | None = None

    @property
    def bound(self) -> str:
        """Where it listens now: the socket path, or host:port with the real port."""
        if self._runner is not None and self.address.path is None:
            for bound in self._runner.addresses:
                if isinstance(bound, tuple):
                    return str(ListenAddress(self.address.host, int(bound[1])))
        return str(self.address)

    @property
    def port(self) -> int | None:
        """The TCP port actually bound (useful with port 0), None for a Unix socket."""
        if self._runner is None or self.address.path is not None:
            return None
        for bound in self._runner.addresses:
            if isinstance(bound, tuple):
                return int(bound[1])
        return None

    async def start(self) -> None:
        runner = web.AppRunner(
            self._app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_SECONDS
        )
        await runner.setup()
        try:
            site = self._site(runner)
            await site.start()
        except OSError as error:
            await runner.cleanup()
            reason = error.strerror or str(error)
            raise HttpListenError(
                f"{self._setting} {self.address}: cannot listen: {reason}"
            ) from None
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        log.info(
            "%s: listening on %s",
            self._setting,
            self.bound,
            extra={"event": "http_listening", "address": self.bound},
        )

    def _site(self, runner: web.AppRunner) -> web.BaseSite:
        path = self.address.path
        if path is None:
            return web.TCPSite(runner, self.address.host, self.address.port)
        path.parent.mkdir(parents=True, exist_ok=True)
        _clear_stale_socket(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            os.fchmod(sock.fileno(), 0o600)  # before bind: no moment with wider access
            sock.bind(str(path))
            os.chmod(path, SOCKET_MODE)  # bind applied the umask; the group is meant to connect
        except BaseException:
            sock.close()
            raise
        self._socket_path = path
        self._inode = os.stat(path).st_ino
        return web.SockSite(runner, sock)

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        path, self._socket_path = self._socket_path, None
        if path is not None:
            # Only our own socket: a later gateway may already have bound the same path.
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_ino == self._inode:
                    path.unlink()


def _clear_stale_socket(path: Path) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        path.unlink()  # nobody listens: left by a gateway that died
        return
    finally:
        probe.close()
    raise OSError(f"{path}: another process is listening there already")
