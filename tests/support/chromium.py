"""A headless Chromium driven over the Chrome DevTools protocol (a websocket to its
--remote-debugging-port), for the browser view's tests: open a page, watch its network (the
document's status, the terminal's websocket frames), press keys, take a screenshot.

The distribution's package (`apt-get install chromium`; .ci/run installs it where missing).
Every process it starts is ended when the context closes, its profile a fresh directory."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, ClientWebSocketResponse, WSMsgType

CANDIDATES = ("chromium", "chromium-browser", "/usr/bin/chromium")
# Without the background-networking flags Chromium reaches for the internet at start (its
# component updater, sync, field trials), which a closed network refuses slowly.
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
)  # fmt: skip


def find_chromium() -> str | None:
    for name in CANDIDATES:
        if found := shutil.which(name):
            return found
    return None


class Page:
    """One tab, over its own DevTools websocket: commands answered by id, events queued."""

    def __init__(self, websocket: ClientWebSocketResponse) -> None:
        self._websocket = websocket
        self._ids = itertools.count(1)
        self._answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._listeners: list[Callable[[str, dict[str, Any]], None]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self._websocket:
            if message.type != WSMsgType.TEXT:
                continue
            data: dict[str, Any] = json.loads(message.data)
            if "id" in data:
                answer = self._answers.pop(data["id"], None)
                if answer is not None and not answer.done():
                    answer.set_result(data)
            else:
                for listener in list(self._listeners):
                    listener(data["method"], data.get("params", {}))
        for answer in self._answers.values():
            if not answer.done():
                answer.set_exception(ConnectionError("the browser closed its DevTools socket"))

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self._ids)
        answer = asyncio.get_running_loop().create_future()
        self._answers[number] = answer
        command = {"id": number, "method": method, "params": params}
        await self._websocket.send_str(json.dumps(command))
        data = await asyncio.wait_for(answer, 30)
        if "error" in data:
            raise RuntimeError(f"{method}: {data['error']}")
        result: dict[str, Any] = data.get("result", {})
        return result

    def listen(self, listener: Callable[[str, dict[str, Any]], None]) -> None:
        self._listeners.append(listener)

    async def navigate(self, url: str, within: float = 20.0) -> int | None:
        """Open `url` and wait for its load; the HTTP status of the document it ended on
        (None for one that came from no server: about:blank)."""
        statuses: list[int] = []
        loaded = asyncio.Event()

        def watch(method: str, params: dict[str, Any]) -> None:
            if method == "Network.responseReceived" and params.get("type") == "Document":
                statuses.append(int(params["response"]["status"]))
            elif method == "Page.loadEventFired":
                loaded.set()

        self.listen(watch)
        try:
            await self.send("Page.navigate", url=url)
            await asyncio.wait_for(loaded.wait(), within)
        finally:
            self._listeners.remove(watch)
        return statuses[-1] if statuses else None

    async def evaluate(self, expression: str) -> Any:
        answer = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return answer["result"].get("value")

    async def type_keys(self, text: str) -> None:
        """Typed as a person would, into the focused element (xterm.js's hidden textarea)."""
        for char in text:
            await self.send("Input.dispatchKeyEvent", type="keyDown", key=char, text=char)
            await self.send("Input.dispatchKeyEvent", type="keyUp", key=char)

    async def screenshot(self, path: Path) -> None:
        shot = await self.send("Page.captureScreenshot", format="png")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    async def close(self) -> None:
        await self._websocket.close()
        with contextlib.suppress(Exception):
            await self._reader


@asynccontextmanager
async def chromium(
    binary: str, profile: Path, width: int = 1280, height: int = 800
) -> AsyncIterator[Page]:
    """A headless Chromium with a fresh profile in `profile`, and its one page."""
    profile.mkdir(parents=True, exist_ok=True)
    process = await asyncio.create_subprocess_exec(
        binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
        "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "about:blank",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its renderers and helpers in one group, ended together
    )  # fmt: skip
    try:
        port = await _devtools_port(process)
        async with ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as answer:
                targets = await answer.json()
            url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            async with http.ws_connect(url, max_msg_size=64 << 20) as websocket:
                page = Page(websocket)
                await page.send("Page.enable")
                await page.send("Network.enable")
                try:
                    yield page
                finally:
                    await page.close()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # a helper left behind in its group


async def _devtools_port(process: asyncio.subprocess.Process) -> int:
    assert process.stderr is not None
    said: list[str] = []
    async with asyncio.timeout(30):
        while line := (await process.stderr.readline()).decode(errors="replace"):
            said.append(line)
            if found := re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line):
                # The rest of its stderr must still be read, or a full pipe would stall it.
                asyncio.get_running_loop().create_task(_drain(process.stderr))
                return int(found[1])
    raise AssertionError("chromium ended before it listened:\n" + "".join(said[-20:]))


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass
