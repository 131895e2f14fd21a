"""The browser view's HTTP side: one aiohttp listener, every request behind the token.

    GET /             the page (textual-serve's terminal), 503 when every place is taken
    GET /ws           the tab's websocket: starts its own `switchboard attach` process
    GET /static/...   textual-serve's script, stylesheet and fonts

The web server only talks to the gateway through its attach processes, over the control
socket like any other console, so whatever happens to it (a crash, a kill, a bad request)
never reaches the gateway; and a visitor arriving while the gateway is down is told so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket as sockets
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

import textual_serve
from aiohttp import WSMsgType, web

from console.web.access import Access, Listen, middleware
from console.web.page import page
from console.web.visitors import Visitor, Visitors

log = logging.getLogger(__name__)

STATIC = Path(textual_serve.__file__).parent / "static"
MAX_MESSAGE = 64 << 10  # a key press or a paste; nothing a tab sends is larger
MAX_SIZE = 1000  # columns or rows a tab may ask for


@dataclass(frozen=True, slots=True)
class WebOptions:
    socket: Path
    listen: Listen
    access: Access
    max_clients: int
    allow_actions: bool = False
    hidden_env: tuple[str, ...] = ()  # kept from the consoles (the token's variable)


def visitor_argv(socket: Path, *, allow_actions: bool) -> list[str]:
    """A tab's console: attached over the socket, its actions audited as via the web view."""
    argv = [sys.executable, "-m", "console.cli", "attach", "--socket", str(socket), "--via", "web"]
    return argv if allow_actions else [*argv, "--read-only"]


class WebView:
    def __init__(self, options: WebOptions) -> None:
        self.options = options
        self.visitors = Visitors(options.max_clients)
        self._sockets: set[web.WebSocketResponse] = set()
        self._argv = visitor_argv(options.socket, allow_actions=options.allow_actions)

    def application(self) -> web.Application:
        app = web.Application(middlewares=[middleware(self.options.access)])
        app.add_routes(
            [
                web.get("/", self.index),
                web.get("/ws", self.websocket),
                web.static("/static", STATIC, show_index=False),
            ]
        )
        app.on_shutdown.append(self._close_sockets)
        return app

    async def index(self, request: web.Request) -> web.StreamResponse:
        if self.visitors.full:
            return self._full(request)
        scheme = "wss" if request.secure else "ws"
        # From the Host the browser used, so the page works through a tunnel on another port.
        html = page(
            title="Switchboard console",
            websocket_url=f"{scheme}://{request.host}/ws",
            font_size=_number(request.query.get("fontsize"), 16, 6, 64),
        )
        return web.Response(text=html, content_type="text/html")

    def _full(self, request: web.Request) -> web.Response:
        limit = self.visitors.limit
        log.warning("web: refused %s from %s: %d tabs open", request.path, request.remote, limit)
        return web.Response(
            status=503,
            text=f"503: all {limit} places are taken (web.max_clients); close a tab and retry\n",
        )

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and origin.split("://", 1)[-1] != request.host:
            log.warning("web: refused a websocket from origin %r", origin[:200])
            return web.Response(status=403, text="403: another site's page\n")
        number = self.visitors.reserve()
        if number is None:
            return self._full(request)
        started = False
        websocket = web.WebSocketResponse(heartbeat=15, max_msg_size=MAX_MESSAGE)
        try:
            await websocket.prepare(request)
            self._sockets.add(websocket)
            visitor = Visitor(
                number,
                self._argv,
                hidden=self.options.hidden_env,
                write_bytes=websocket.send_bytes,
                write_str=websocket.send_str,
                close=websocket.close,
            )
            self.visitors.add(visitor)
            started = True
            width = _number(request.query.get("width"), 80, 10, MAX_SIZE)
            height = _number(request.query.get("height"), 24, 5, MAX_SIZE)
            await visitor.start(width, height)
            log.info(
                "web: visitor %d from %s: console pid %s, %dx%d (%d of %d places)",
                number, request.remote, visitor.pid, width, height,
                len(self.visitors.live), self.visitors.limit,
            )  # fmt: skip
            try:
                await self._relay(websocket, visitor)
            finally:
                await visitor.stop()
                log.info("web: visitor %d left; console pid %s ended", number, visitor.pid)
        finally:
            self._sockets.discard(websocket)
            self.visitors.release(number, started=started)
        return websocket

    async def _relay(self, websocket: web.WebSocketResponse, visitor: Visitor) -> None:
        """The tab's messages to its console: keys, its size, focus. Anything else is
        dropped: a tab can do no more than its keyboard could."""
        async for message in websocket:
            if message.type != WSMsgType.TEXT:
                continue
            try:
                envelope = json.loads(message.data)
            except ValueError:
                continue
            if not isinstance(envelope, list) or not envelope:
                continue
            kind, data = envelope[0], envelope[1] if len(envelope) > 1 else None
            if kind == "stdin" and isinstance(data, str):
                await visitor.send_bytes(data.encode("utf-8", "replace"))
            elif kind == "resize" and isinstance(data, dict):
                width = _number(data.get("width"), 80, 10, MAX_SIZE)
                height = _number(data.get("height"), 24, 5, MAX_SIZE)
                await visitor.set_terminal_size(width, height)
            elif kind == "ping" and isinstance(data, str):
                await websocket.send_json(["pong", data[:64]])
            elif kind == "blur":
                await visitor.blur()
            elif kind == "focus":
                await visitor.focus()

    async def _close_sockets(self, app: web.Application) -> None:
        for websocket in list(self._sockets):
            await websocket.close(code=1001, message=b"the web server is stopping")


def _number(raw: object, default: int, low: int, high: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        return default
    try:
        value = int(raw)
    except ValueError:
        return default
    return min(max(value, low), high)


def _gateway_listening(path: Path) -> bool:
    probe = sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _bind(listen: Listen) -> sockets.socket:
    """The listening socket, bound before the app is made (port 0 picks a free one, which
    the sign-in URL and the cookie's name need)."""
    family = sockets.AF_INET6 if ":" in listen.host else sockets.AF_INET
    if listen.host == "localhost":
        listen = Listen("127.0.0.1", listen.port)
    sock = sockets.socket(family, sockets.SOCK_STREAM)
    try:
        sock.setsockopt(sockets.SOL_SOCKET, sockets.SO_REUSEADDR, 1)
        sock.bind((listen.host, listen.port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError as error:
        sock.close()
        where = listen.url().removeprefix("http://").rstrip("/")
        raise OSError(f"web: cannot listen on {where}: {error.strerror}") from None
    except BaseException:
        sock.close()
        raise
    return sock


def serve_logging(level: str, token: str) -> None:
    """Plain lines on stderr, the token redacted should anything ever carry it."""
    from console.serve import RedactingFormatter
    from gateway_core.service.json_log import JsonFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(JsonFormatter([token])))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def describe(options: WebOptions, port: int, token_env: str) -> list[str]:
    """What `switchboard web` prints at start: where, for whom, and the sign-in URL."""
    listen = options.listen
    url = (
        Listen(sockets.gethostname(), port).url()
        if listen.host in ("0.0.0.0", "::")
        else (listen.url(port))
    )
    mode = (
        "actions allowed (audited as coming from the web view)"
        if options.allow_actions
        else "read-only"
    )
    lines = [
        f"switchboard web: the console of {options.socket}, {mode}, "
        f"for up to {options.max_clients} browser tabs",
    ]
    if listen.loopback:
        lines.append(
            f"  serving {url} on this machine only; from another one: "
            f"ssh -L {port}:{listen.host}:{port} THIS_HOST, then open the URL below there"
        )
    else:
        lines.append(f"  serving {url} (every request needs the token)")
    if options.access.configured:
        lines.append(f"  sign in once with: {url}?token=<the token in ${token_env}>")
    else:
        lines.append(f"  sign in once with: {url}?token={options.access.token}")
    if not _gateway_listening(options.socket):
        lines.append(f"  (no gateway listens on {options.socket} yet: visitors are told so)")
    return lines


async def run_web(options: WebOptions, *, token_env: str, out: TextIO = sys.stdout) -> int:
    """Serve until SIGINT or SIGTERM; then close every tab (ending its console) and stop."""
    listening = _bind(options.listen)
    port: int = listening.getsockname()[1]
    # Cookies ignore the port: two servers on one host need cookies of their own.
    options = replace(options, access=replace(options.access, cookie=f"switchboard-web-{port}"))
    view = WebView(options)
    runner = web.AppRunner(view.application(), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.SockSite(runner, listening).start()
        print("\n".join(describe(options, port, token_env)), file=out, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("web: stopping; closing %d tabs", len(view.visitors.live))
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()
    return 0
