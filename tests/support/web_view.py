"""The browser view for tests: `WebView` on a free loopback port in front of a real gateway's
control socket, and a tab as its websocket sees it (the screen read through a terminal
model, pyte, the way xterm.js in the page draws it)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import pyte
from aiohttp import ClientSession, ClientWebSocketResponse, CookieJar, WSMsgType, web

from console.web.access import Access, Listen
from console.web.server import WebOptions, WebView, _bind
from gateway_core.clock import ManualClock
from gateway_core.service.control_server import ControlServer
from tests.support.harness import Running, start_gateway

TOKEN = "a-test-token-of-the-web-view-0123456789"
BANNER_LIVE = "RUNNING"


@dataclass
class Site:
    """A web view being served, in this process or by `switchboard web`."""

    url: str  # http://127.0.0.1:PORT/
    token: str

    @property
    def cookie(self) -> str:
        return f"switchboard-web-{self.url.rstrip('/').rsplit(':', 1)[1]}"

    def browser(self) -> ClientSession:
        """A client that keeps cookies like a browser (aiohttp's default jar refuses those
        of an IP address)."""
        return ClientSession(cookie_jar=CookieJar(unsafe=True))

    async def sign_in(self, client: ClientSession) -> None:
        async with client.get(f"{self.url}?token={self.token}", allow_redirects=False) as answer:
            assert answer.status == 303, answer.status
        assert any(cookie.key == self.cookie for cookie in client.cookie_jar)


@dataclass
class Served(Site):
    view: WebView | None = None

    @property
    def tabs(self) -> int:
        assert self.view is not None
        return len(self.view.visitors.live)

    def console_pids(self) -> list[int]:
        assert self.view is not None
        return [pid for visitor in self.view.visitors.live.values() if (pid := visitor.pid)]

    async def until_tabs(self, count: int, within: float = 15.0) -> None:
        """Until the server counts `count` tabs: a tab's place is freed by its handler after
        its console process has ended, a moment later."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while self.tabs != count:
            if loop.time() > deadline:
                raise AssertionError(f"{self.tabs} tabs still open after {within} s, not {count}")
            await asyncio.sleep(0.05)  # the handler's end has no event to wait on from here


@asynccontextmanager
async def web_view(
    socket: Path, *, max_clients: int = 3, allow_actions: bool = False
) -> AsyncIterator[Served]:
    listening = _bind(Listen("127.0.0.1", 0))
    port = listening.getsockname()[1]
    options = WebOptions(
        socket=socket,
        listen=Listen("127.0.0.1", port),
        access=Access(TOKEN, configured=True, cookie=f"switchboard-web-{port}"),
        max_clients=max_clients,
        allow_actions=allow_actions,
    )
    view = WebView(options)
    runner = web.AppRunner(view.application(), access_log=None, shutdown_timeout=15)
    await runner.setup()
    try:
        await web.SockSite(runner, listening).start()
        yield Served(f"http://127.0.0.1:{port}/", TOKEN, view)
    finally:
        pids = [visitor.pid for visitor in view.visitors.live.values() if visitor.pid]
        await runner.cleanup()  # closes every tab's websocket, which ends its console
        for pid in pids:
            await gone(pid)


@asynccontextmanager
async def gateway_with_socket(
    state: Path, clock: ManualClock, running: Running | None = None
) -> AsyncIterator[tuple[Running, ControlServer]]:
    running = running or await start_gateway(state, clock)
    server = ControlServer(running.gateway, state.parent / "control.sock")
    await server.start()
    try:
        yield running, server
    finally:
        await server.close()
        await running.stop()


class Screen:
    """The screen a tab draws from its console's output, woken at each change."""

    def __init__(self, width: int, height: int) -> None:
        self.model = pyte.Screen(width, height)
        self._stream = pyte.ByteStream(self.model)
        self.changed = asyncio.Event()
        self.closed = asyncio.Event()

    def feed(self, data: bytes) -> None:
        self._stream.feed(data)
        self.changed.set()

    def resize(self, width: int, height: int) -> None:
        self.model.resize(height, width)

    def close(self) -> None:
        self.closed.set()
        self.changed.set()

    @property
    def text(self) -> str:
        return "\n".join(str(line) for line in self.model.display)

    def line(self, number: int) -> str:
        return str(self.model.display[number])

    async def wait_for(self, check: Callable[[str], bool], what: str, within: float = 30.0) -> str:
        """The screen once check(screen) holds, woken by each frame; fails with the screen."""
        try:
            async with asyncio.timeout(within):
                while not check(self.text):
                    if self.closed.is_set():
                        raise AssertionError(f"the tab closed before: {what}\n{self.text}")
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            raise AssertionError(f"not seen within {within} s: {what}\n{self.text}") from None
        return self.text

    async def live(self) -> str:
        return await self.wait_for(lambda screen: BANNER_LIVE in screen, "the live banner")

    async def ended(self, within: float = 30.0) -> None:
        """Until the server has closed this tab's websocket (its console ended)."""
        try:
            await asyncio.wait_for(self.closed.wait(), within)
        except TimeoutError:
            raise AssertionError(f"the tab still open after {within} s\n{self.text}") from None


class Tab(Screen):
    """One browser tab's websocket: keys out, the screen in."""

    def __init__(self, websocket: ClientWebSocketResponse, width: int, height: int) -> None:
        super().__init__(width, height)
        self.websocket = websocket
        self.texts: list[object] = []  # the JSON messages (pong, open_url...)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.websocket:
                if message.type == WSMsgType.BINARY:
                    self.feed(message.data)
                elif message.type == WSMsgType.TEXT:
                    self.texts.append(json.loads(message.data))
        finally:
            self.close()

    async def press(self, keys: str) -> None:
        await self.websocket.send_str(json.dumps(["stdin", keys]))

    async def close_tab(self) -> None:
        await self.websocket.close()
        await self._reader


@asynccontextmanager
async def open_tab(
    served: Site, client: ClientSession, width: int = 120, height: int = 36
) -> AsyncIterator[Tab]:
    async with client.ws_connect(f"{served.url}ws?width={width}&height={height}") as websocket:
        tab = Tab(websocket, width, height)
        try:
            yield tab
        finally:
            await tab.close_tab()


async def gone(pid: int, within: float = 15.0) -> None:
    """Until process `pid` has ended (and been reaped by whoever started it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while alive(pid):
        if loop.time() > deadline:
            raise AssertionError(f"console process {pid} still runs after {within} s")
        await asyncio.sleep(0.05)  # another process's end has no event to wait on here


def alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie has ended: only its parent has yet to reap it)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
