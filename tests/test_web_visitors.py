"""Each browser tab gets its own `switchboard attach` over the control socket (issue 18):
read-only unless --allow-actions, then audited as coming from the web view; at most
web.max_clients of them; a closed tab ends its process. Driven at the websocket level, the
screen read through a terminal model as the page's xterm.js would draw it."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from gateway_core.clock import ManualClock
from gateway_core.runtime import GatewayState
from tests.support.web_view import alive, gateway_with_socket, gone, open_tab, web_view

ME = pwd.getpwuid(os.getuid()).pw_name
pytestmark = pytest.mark.slow  # each tab is a real console process


async def test_a_tab_shows_the_live_console_and_a_key_press_changes_its_tab(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with (
        gateway_with_socket(tmp_path / "state", clock) as (_, server),
        web_view(server.path) as served,
        served.browser() as client,
    ):
        await served.sign_in(client)
        async with open_tab(served, client) as tab:
            screen = await tab.live()
            assert "READ-ONLY" in tab.line(0) and "run #1" in tab.line(0)
            assert "Gateway running" in screen and "Sessions: " not in screen
            await tab.press("2")
            screen = await tab.wait_for(lambda s: "Sessions: 0 of 0 shown" in s, "tab 2")
            assert "Conversation" in screen and "Gateway running" not in screen
            await tab.press("6")
            await tab.wait_for(lambda s: "Audit" in s and "Conversation" not in s, "tab 6")


async def test_a_read_only_tab_cannot_act(tmp_path: Path, clock: ManualClock) -> None:
    async with (
        gateway_with_socket(tmp_path / "state", clock) as (running_gateway, server),
        web_view(server.path) as served,
        served.browser() as client,
    ):
        gateway = running_gateway.gateway
        await served.sign_in(client)
        async with open_tab(served, client) as tab:
            await tab.live()
            await tab.press("s")  # quiet: offered by a console that may act
            await tab.press("2")  # a key after it, so "s" has been handled when this shows
            await tab.wait_for(lambda s: "Sessions: 0 of 0" in s, "tab 2")
            assert "Go quiet?" not in tab.text
        assert gateway.state == GatewayState.RUNNING
        assert await gateway.store.audit.recent() == []


async def test_with_actions_allowed_an_action_is_audited_as_from_the_web_view(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with (
        gateway_with_socket(tmp_path / "state", clock) as (running_gateway, server),
        web_view(server.path, allow_actions=True) as served,
        served.browser() as client,
    ):
        gateway = running_gateway.gateway
        await served.sign_in(client)
        async with open_tab(served, client) as tab:
            await tab.live()
            assert "READ-ONLY" not in tab.line(0)
            await tab.press("s")
            await tab.wait_for(lambda s: "Go quiet?" in s, "the confirmation")
            await tab.press("\t")  # from Cancel (focused first) to Quiet
            await tab.press("\r")
            await tab.wait_for(lambda s: "QUIET" in tab.line(0), "the quiet banner")
        assert gateway.state == GatewayState.QUIET
        (entry,) = await gateway.store.audit.recent()
        assert (entry.actor, entry.action, entry.outcome) == (f"{ME} via web", "quiet", "ok")


async def test_a_closed_tab_ends_its_console_process(tmp_path: Path, clock: ManualClock) -> None:
    async with (
        gateway_with_socket(tmp_path / "state", clock) as (_, server),
        web_view(server.path) as served,
        served.browser() as client,
    ):
        await served.sign_in(client)
        async with open_tab(served, client) as first, open_tab(served, client) as second:
            await first.live()
            await second.live()
            pids = served.console_pids()
            assert len(pids) == 2 and all(alive(pid) for pid in pids)
            await first.close_tab()
            await gone(pids[0])
            assert alive(pids[1])  # the other tab's console is its own
            await second.press("q")  # leaving the console closes its tab too
            await second.wait_for(lambda s: "Leave the console?" in s, "the leave dialog")
            await second.press("\t")  # from Cancel (focused first) to Detach
            await second.press("\r")
            await second.ended()
            await gone(pids[1])
        await served.until_tabs(0)


async def test_past_max_clients_the_next_gets_503_until_a_tab_closes(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with (
        gateway_with_socket(tmp_path / "state", clock) as (_, server),
        web_view(server.path, max_clients=1) as served,
        served.browser() as client,
    ):
        await served.sign_in(client)
        async with open_tab(served, client) as tab:
            await tab.live()
            async with client.get(served.url) as page:
                assert page.status == 503
                assert "all 1 places are taken (web.max_clients)" in await page.text()
            async with client.get(served.url + "ws", headers={"Upgrade": "websocket"}) as socket:
                assert socket.status == 503
            (pid,) = served.console_pids()
        await gone(pid)
        await served.until_tabs(0)
        async with client.get(served.url) as page:
            assert page.status == 200
        async with open_tab(served, client) as again:
            await again.live()


async def test_a_tab_with_no_gateway_behind_it_is_told_so_and_closed(tmp_path: Path) -> None:
    missing = tmp_path / "control.sock"
    async with web_view(missing) as served, served.browser() as client:
        await served.sign_in(client)
        async with open_tab(served, client) as tab:
            await tab.ended()
            assert f"no gateway is listening on {missing}" in tab.text.replace("\n", "")
        await served.until_tabs(0)
