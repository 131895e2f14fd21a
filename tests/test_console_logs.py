"""Reading what is there: a job's log, the transcript pane and the gateway's log open at the
newest line, follow new output while at the end, scroll with the keys, and keep their place
once the operator scrolled up (issue 13, item 9)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from textual.widget import Widget

from console.app import ConsoleApp
from console.attach import ControlClient, SocketBackend
from console.screens.log_view import LogScreen
from console.widgets.follow_log import FollowLog
from gateway_core.clock import ManualClock
from gateway_core.events import NotifierFired, TurnFinished
from gateway_core.log_ring import LogRing
from gateway_core.service.control_server import ControlServer
from gateway_core.service.runner import log_event
from tests.support.console_fixtures import Busy
from tests.support.console_pilot import (
    ConsolePilot,
    Jobs,
    closed,
    focus_row,
    open_console,
    rendered_lines,
    show_tab,
    table,
    wait_until,
)
from tests.support.harness import Running


def screen(app: ConsoleApp) -> str:
    return "\n".join(rendered_lines(app))


def at_end(widget: Widget) -> bool:
    return widget.max_scroll_y > 0 and widget.scroll_y >= widget.max_scroll_y


async def open_job_log(app: ConsoleApp, pilot: ConsolePilot, job_id: str) -> FollowLog:
    await show_tab(app, pilot, "4", "processes")
    await focus_row(pilot, table(app, "#process-table"), job_id)
    await pilot.press("l")
    await wait_until(pilot, lambda: isinstance(app.screen, LogScreen), "the job's log")
    log = app.screen.query_one(FollowLog)
    await wait_until(pilot, lambda: len(log.lines) > 0, "its lines")
    return log


async def test_a_finished_jobs_log_opens_at_the_end_and_scrolls_with_the_keys(
    busy: Busy, jobs: Jobs
) -> None:
    job = await jobs.start(busy.gateway, "seq 1 45 | sed 's/^/line /'", busy.carl.session.id)
    async with asyncio.timeout(10):
        await job.finished.wait()
    async with open_console(busy.gateway) as (app, pilot):
        log = await open_job_log(app, pilot, job.id)
        await wait_until(pilot, lambda: at_end(log), "opened at the end")
        assert "line 45" in screen(app) and "line 1\n" not in screen(app) + "\n"
        for key, check in (
            ("home", lambda: log.scroll_y == 0),
            ("end", lambda: at_end(log)),
            ("g", lambda: log.scroll_y == 0),
            ("down", lambda: log.scroll_y == 1),
            ("pagedown", lambda: log.scroll_y > 1),
            ("G", lambda: at_end(log)),
            ("pageup", lambda: not at_end(log)),
            ("up", lambda: not at_end(log)),
        ):
            await pilot.press(key)
            await wait_until(pilot, check, f"after {key}")
        await pilot.press("g")
        await wait_until(pilot, lambda: "line 1 " in screen(app) + " ", "the first line shown")
        await pilot.press("q")
        await closed(app, pilot)


async def test_a_running_jobs_log_follows_at_the_end_and_stays_put_when_scrolled_up(
    busy: Busy, jobs: Jobs
) -> None:
    command = "for i in $(seq 1 400); do echo tick $i; sleep 0.02; done"
    job = await jobs.start(busy.gateway, command, busy.carl.session.id)
    async with open_console(busy.gateway) as (app, pilot):
        await wait_until(pilot, lambda: job.output.total_lines > 60, "enough output", 20)
        log = await open_job_log(app, pilot, job.id)
        seen = len(log.lines)
        await wait_until(pilot, lambda: len(log.lines) > seen + 20, "new output shown", 20)
        await wait_until(pilot, lambda: at_end(log), "followed to the end")

        await pilot.press("home")
        await wait_until(pilot, lambda: log.scroll_y == 0, "scrolled to the top")
        seen = len(log.lines)
        await wait_until(pilot, lambda: len(log.lines) > seen + 20, "more output", 20)
        assert log.scroll_y == 0  # the operator's place is kept

        await pilot.press("G")  # follow again
        seen = len(log.lines)
        await wait_until(pilot, lambda: len(log.lines) > seen + 10, "more output", 20)
        await wait_until(pilot, lambda: at_end(log), "following again")
        await pilot.press("escape")
        await closed(app, pilot)


async def test_the_transcript_pane_shows_the_newest_rows(running: Running) -> None:
    ada = running.adapter.user("ada", name="ada")
    for number in range(1, 26):  # long enough to wrap: more lines than the pane holds
        await ada.say(f"message {number} " + "and some more words " * 5)
        await ada.wait_for(number)
    async with open_console(running.gateway) as (app, pilot):
        await show_tab(app, pilot, "2", "sessions")
        pane = app.query_one("#transcript-scroll")
        await wait_until(pilot, lambda: "You said: message 25" in screen(app), "the newest row")
        await wait_until(pilot, lambda: at_end(pane), "the pane at its end")


async def test_the_log_pane_shows_the_newest_line_and_keeps_its_place(
    running: Running,
) -> None:
    ring = LogRing()

    def emit(text: str) -> None:
        ring.emit(logging.makeLogRecord({"name": "demo", "msg": text, "levelname": "INFO"}))

    for number in range(1, 101):
        emit(f"old line {number}")
    async with open_console(running.gateway, log=ring) as (app, pilot):
        await show_tab(app, pilot, "6", "audit")
        log = app.query_one("#log", FollowLog)
        await wait_until(pilot, lambda: "old line 100" in screen(app), "the newest line shown")
        assert at_end(log)
        emit("new line 1")
        await app.tick()
        await wait_until(pilot, lambda: "new line 1" in screen(app), "a new line followed")

        log.focus()
        await pilot.press("home")
        await wait_until(pilot, lambda: log.scroll_y == 0, "scrolled up")
        emit("new line 2")
        await app.tick()
        await pilot.pause()
        assert log.scroll_y == 0 and "new line 2" in log.plain_lines[-1]


# -- item 13: the log pane shows time, level, event, session and a readable message ----------


async def test_the_log_pane_shows_time_level_event_session_and_a_readable_message(
    running: Running, clock: ManualClock
) -> None:
    ring = LogRing()
    service_log = logging.getLogger("gateway_core.service.runner")
    service_log.addHandler(ring)
    service_log.setLevel(logging.INFO)
    try:
        log_event(
            TurnFinished(clock.now(), 7, 3, "completed", 0.0013629029999719933), "loopback:ada:-"
        )
        log_event(NotifierFired(clock.now(), 7, 3, 2, False), "loopback:ada:-")
    finally:
        service_log.removeHandler(ring)
    async with open_console(running.gateway, log=ring) as (app, pilot):
        await show_tab(app, pilot, "6", "audit")
        log = app.query_one("#log", FollowLog)
        await wait_until(pilot, lambda: len(log.lines) == 2, "the two lines")
        finished, fired = (line.rstrip() for line in log.plain_lines)
        stamp = time.strftime("%H:%M:%S", time.localtime(ring.entries()[0].at))
        assert finished.split() == [
            stamp,
            "INFO",
            "TurnFinished",
            "loopback:ada",
            "generation=3",
            "outcome=completed",
            "seconds=0.0014",
        ]
        assert fired.split()[1:] == [
            "INFO",
            "NotifierFired",
            "loopback:ada",
            "generation=3",
            "count=2",
            "edited=False",
        ]
        assert finished.index("loopback") == fired.index("loopback")  # in columns


async def test_an_attached_console_shows_the_same_log_lines(
    running: Running, tmp_path: Path
) -> None:
    ring = LogRing()
    server = ControlServer(running.gateway, tmp_path / "control.sock", log_ring=ring)
    await server.start()
    try:
        logging.getLogger("gateway_core.demo").addHandler(ring)
        logging.getLogger("gateway_core.demo").warning(
            "reply %s not sent", 12, extra={"event": "delivery_failed", "session": "tg:1:-"}
        )
        client = await ControlClient.connect(server.path)
        try:
            entries = await SocketBackend(client).log_entries(0, 10)
        finally:
            await client.close()
    finally:
        logging.getLogger("gateway_core.demo").removeHandler(ring)
        await server.close()
    (entry,) = entries
    assert (entry.level, entry.event, entry.session, entry.message) == (
        "WARNING",
        "delivery_failed",
        "tg:1:-",
        "reply 12 not sent",
    )
    assert entry == ring.entries()[0]


def test_the_log_ring_redacts_its_entries_like_its_lines() -> None:
    ring = LogRing(redact=lambda text: text.replace("s3cret", "***"))
    ring.emit(logging.makeLogRecord({"name": "x", "msg": "token s3cret", "levelname": "INFO"}))
    assert ring.entries()[0].message == "token ***"
    assert ring.tail()[0].endswith("token ***")
