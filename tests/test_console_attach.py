"""An attached console notices at once that the gateway went away, says so with the age of
what it shows, reconnects with backoff and is live again when the gateway is back (issue 13,
item 14). A real gateway behind a real control socket; the console refreshes only every
30 s here, so what happens sooner is the backend's own doing."""

from __future__ import annotations

import time
from pathlib import Path

from console.app import ConsoleApp
from console.attach import SocketBackend
from gateway_core.clock import ManualClock
from gateway_core.service.control_server import ControlServer
from tests.support.console_pilot import ConsolePilot, static_text, wait_until
from tests.support.harness import Running, start_gateway


async def serve(tmp_path: Path, clock: ManualClock) -> tuple[Running, ControlServer]:
    running = await start_gateway(tmp_path / "state", clock)
    server = ControlServer(running.gateway, tmp_path / "control.sock")
    await server.start()
    return running, server


def banner(app: ConsoleApp) -> str:
    return static_text(app, "#banner")


async def test_the_console_shows_the_disconnection_at_once_and_comes_back_live(
    tmp_path: Path, clock: ManualClock
) -> None:
    running, server = await serve(tmp_path, clock)
    backend = await SocketBackend.connect(server.path, backoff=(0.05, 0.1, 0.2))
    app = ConsoleApp(backend, refresh_every=30, attached=True)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            pilot_: ConsolePilot = pilot
            await wait_until(pilot_, lambda: "RUNNING" in banner(app), "live")
            assert "run #1" in banner(app) and app.offers("quiet")

            lost = time.monotonic()
            await server.close()
            await running.stop()
            await wait_until(pilot_, lambda: "DISCONNECTED" in banner(app), "the loss shown", 3)
            assert time.monotonic() - lost < 3  # well before the next refresh (30 s)
            assert "RUNNING" not in banner(app)
            assert "data" in banner(app) and "old" in banner(app)
            assert not app.offers("quiet")  # nothing can be done over a closed link

            back, server = await serve(tmp_path, clock)
            await wait_until(pilot_, lambda: "run #2" in banner(app), "live again", 5)
            assert "DISCONNECTED" not in banner(app) and "RUNNING" in banner(app)
            assert app.offers("quiet")
            app.exit("detach")
        await back.stop()
    finally:
        await backend.close()
        await server.close()
