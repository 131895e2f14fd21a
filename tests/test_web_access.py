"""Who may use the browser view (issue 18): loopback unless a token is configured, and the
token on every request and on the websocket, from a cookie the one-time sign-in URL sets.
A request without it, or with a wrong one, gets 401 and a log line, and never a console."""

from __future__ import annotations

import logging
from pathlib import Path

import psutil
import pytest

from console.web.access import Access, Listen, access_for, parse_listen
from gateway_core.clock import ManualClock
from gateway_core.config import ConfigError, WebSettings
from tests.support.web_view import TOKEN, gateway_with_socket, web_view

SETTINGS = WebSettings(token_env="SWITCHBOARD_WEB_TOKEN", max_clients=4)


def test_a_listen_address_is_host_and_port() -> None:
    assert parse_listen("127.0.0.1:8566") == Listen("127.0.0.1", 8566)
    assert parse_listen("[::1]:9000") == Listen("::1", 9000)
    for bad, why in (("8566", "HOST:PORT"), ("h:x", "not a number"), ("h:70000", "0-65535")):
        with pytest.raises(ValueError, match=why):
            parse_listen(bad)


def test_only_loopback_addresses_count_as_this_machine() -> None:
    for host in ("127.0.0.1", "127.8.9.1", "::1", "localhost"):
        assert Listen(host, 1).loopback, host
    for host in ("0.0.0.0", "::", "192.168.1.5", "gateway.example.org"):
        assert not Listen(host, 1).loopback, host


def test_beyond_loopback_without_a_token_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"not a loopback address.*SWITCHBOARD_WEB_TOKEN"):
        access_for(Listen("0.0.0.0", 8566), SETTINGS, {})
    configured = access_for(Listen("0.0.0.0", 8566), SETTINGS, {SETTINGS.token_env: TOKEN})
    assert configured == Access(TOKEN, configured=True)


def test_a_short_token_is_refused_and_loopback_without_one_makes_its_own() -> None:
    with pytest.raises(ConfigError, match="at least 16"):
        access_for(Listen("127.0.0.1", 8566), SETTINGS, {SETTINGS.token_env: "short"})
    made = access_for(Listen("127.0.0.1", 8566), SETTINGS, {})
    again = access_for(Listen("127.0.0.1", 8566), SETTINGS, {})
    assert not made.configured and len(made.token) >= 32 and made.token != again.token


def test_a_token_is_compared_whole() -> None:
    access = Access(TOKEN)
    assert access.accepts(TOKEN)
    for wrong in (None, "", TOKEN[:-1], TOKEN + "x", TOKEN.upper()):
        assert not access.accepts(wrong), wrong


def _children() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


async def test_without_the_token_every_request_gets_401_a_log_line_and_no_console(
    tmp_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    before = _children()
    caplog.set_level(logging.WARNING, logger="console.web")
    async with (
        gateway_with_socket(tmp_path / "state", clock) as (running, server),
        web_view(server.path) as served,
    ):
        store = running.gateway.store
        if await store.write_process_started():  # the store's own helper is no console
            before.add(store.write_process_pid or 0)
        async with served.browser() as client:
            for path in ("", "ws", "static/js/textual.js", "?token=wrong-token-guess"):
                async with client.get(served.url + path, allow_redirects=False) as answer:
                    assert answer.status == 401, path
                    assert "sign-in URL" in await answer.text()
                    assert answer.headers["Cache-Control"] == "no-store"
            client.cookie_jar.update_cookies({served.cookie: TOKEN[:-1] + "?"})
            async with client.get(served.url + "ws", headers={"Upgrade": "websocket"}) as answer:
                assert answer.status == 401
            async with client.get(
                served.url, headers={"Authorization": "Bearer not-the-token"}
            ) as answer:
                assert answer.status == 401
        assert served.tabs == 0 and _children() == before
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 6, refusals
    assert "GET /ws from 127.0.0.1: no token" in refusals[1]
    assert "wrong token in the URL" in refusals[3]
    assert all("wrong-token-guess" not in line and TOKEN not in line for line in refusals)


async def test_the_sign_in_url_sets_a_cookie_and_leaves_the_address_bar(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with (
        gateway_with_socket(tmp_path / "state", clock) as (_, server),
        web_view(server.path) as served,
    ):
        async with served.browser() as client:
            async with client.get(
                f"{served.url}?token={TOKEN}&fontsize=14", allow_redirects=False
            ) as answer:
                assert answer.status == 303
                assert answer.headers["Location"] == "/?fontsize=14"  # the token left behind
                cookie = answer.cookies[served.cookie]
                assert cookie.value == TOKEN and cookie["httponly"] and cookie["path"] == "/"
                assert cookie["samesite"] == "Strict"
            async with client.get(served.url + "?fontsize=14") as page:
                assert page.status == 200
                html = await page.text()
                assert f'data-session-websocket-url="ws://127.0.0.1:{served.url[17:-1]}/ws"' in (
                    html
                )
                assert "http" not in html.replace("data-session-websocket-url", "")  # no CDN
                assert page.headers["X-Frame-Options"] == "DENY"
                assert page.headers["Cache-Control"] == "no-store"
            async with client.get(served.url + "static/js/textual.js") as script:
                assert script.status == 200
        bearer = {"Authorization": f"Bearer {TOKEN}"}  # a script may send it as a header
        async with served.browser() as scripted, scripted.get(served.url, headers=bearer) as page:
            assert page.status == 200


async def test_a_websocket_from_another_sites_page_is_refused(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with (
        gateway_with_socket(tmp_path / "state", clock) as (_, server),
        web_view(server.path) as served,
    ):
        async with served.browser() as client:
            await served.sign_in(client)
            async with client.get(
                served.url + "ws", headers={"Origin": "http://evil.example"}
            ) as answer:
                assert answer.status == 403
        assert served.tabs == 0
