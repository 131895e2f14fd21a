"""The browser view in a real browser (issue 18): headless Chromium, driven over the DevTools
protocol, gets 401 without the token; with the sign-in URL it gets the page, whose terminal
shows the live banner and, after a key press, the sessions table; a screenshot is taken.

What the page's terminal draws is read from the websocket frames the browser received, through
a terminal model; the screenshot (web.png) shows how it looked. It goes to tmp_path, or to the
directory SWITCHBOARD_SCREENSHOTS names (`SWITCHBOARD_SCREENSHOTS=screenshots` redraws the
committed one)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from gateway_core.clock import ManualClock
from tests.support.chromium import chromium, find_chromium
from tests.support.console_pilot import Crashed, crashed_gateway
from tests.support.web_view import TOKEN, Screen, gateway_with_socket, gone, web_view

pytestmark = pytest.mark.slow
CHROMIUM = find_chromium()


class Frames:
    """The terminal's websocket as the browser saw it, drawn into a Screen."""

    def __init__(self) -> None:
        self.screen: Screen | None = None
        self.requested: list[str] = []

    def __call__(self, method: str, params: dict[str, Any]) -> None:
        if method == "Network.requestWillBeSent":
            self.requested.append(params["request"]["url"])
        elif method == "Network.webSocketCreated":
            query = parse_qs(urlsplit(params["url"]).query)
            self.screen = Screen(int(query["width"][0]), int(query["height"][0]))
        elif self.screen is None:
            return
        elif method == "Network.webSocketFrameReceived" and params["response"]["opcode"] == 2:
            self.screen.feed(base64.b64decode(params["response"]["payloadData"]))
        elif method == "Network.webSocketFrameSent" and params["response"]["opcode"] == 1:
            message = json.loads(params["response"]["payloadData"])
            if message[0] == "resize":
                self.screen.resize(message[1]["width"], message[1]["height"])
        elif method == "Network.webSocketClosed":
            self.screen.close()


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install chromium): skipped")
async def test_a_browser_signs_in_and_sees_the_live_console(
    tmp_path: Path, clock: ManualClock
) -> None:
    assert CHROMIUM is not None
    out = Path(os.environ.get("SWITCHBOARD_SCREENSHOTS") or tmp_path)
    running, _ = await crashed_gateway(
        tmp_path / "state", clock, [Crashed("ada", "Ada"), Crashed("bob", "Bob", risky=False)]
    )
    await running.adapter.user("carl", name="Carl").say("hello")
    async with (
        gateway_with_socket(tmp_path / "state", clock, running) as (_, server),
        web_view(server.path) as served,
        chromium(CHROMIUM, tmp_path / "profile") as page,
    ):
        frames = Frames()
        page.listen(frames)
        assert await page.navigate(served.url) == 401
        assert "sign-in URL" in await page.evaluate("document.body.innerText")
        assert frames.screen is None and served.tabs == 0

        assert await page.navigate(f"{served.url}?token={TOKEN}") == 200
        assert await page.evaluate("location.href") == served.url  # the token left the bar
        assert frames.screen is not None
        screen = frames.screen
        await screen.live()
        (console,) = served.console_pids()
        await page.evaluate("document.querySelector('.xterm-helper-textarea').focus()")
        await page.type_keys("2")
        shown = await screen.wait_for(lambda s: "Sessions: 3 of 3 shown" in s, "the sessions")
        assert "loopback:ada" in shown and "loopback:carl" in shown and "READ-ONLY" in shown
        # Two animation frames: xterm.js draws what it received on the next one.
        await page.send(
            "Runtime.evaluate",
            expression="new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))",
            awaitPromise=True,
        )
        assert await page.evaluate("document.body.classList.contains('-first-byte')")
        await page.screenshot(out / "web.png")
        assert (out / "web.png").stat().st_size > 10_000
        assert all(url.startswith(served.url) for url in frames.requested), frames.requested

        await page.navigate("about:blank")  # the page goes, and with it its console
        await gone(console)
