"""On a node: inbox items any node committed, picked up by the node that may own them.

The intake node commits every update to the shared inbox and hands each to its own lane;
a session another node owns is not started there (its lease is held), and stays in the
inbox for its owner. Each node looks at the inbox when woken (PostgreSQL NOTIFY from the
committing transaction) and at least every `cluster.inbox_poll` seconds (a lost
notification costs latency, not a message), and queues the items of sessions it may own:
its own, released or lapsed ones. Two nodes may queue one item; the turn's start
transaction lets one of them start it.
"""

from __future__ import annotations

import asyncio
import logging

from gateway_core.intake import Intake
from gateway_core.runtime import Runtime
from gateway_core.store import StoreError
from gateway_core.store.inbox_wakeups import InboxWakeups

log = logging.getLogger(__name__)


async def _woken_or_polled(rt: Runtime, wake: asyncio.Event) -> bool:
    """True when woken by a notification, False when the poll's time came."""
    waiter = asyncio.ensure_future(wake.wait())
    sleeper = asyncio.ensure_future(rt.clock.sleep(rt.config.cluster.inbox_poll))
    try:
        await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        return wake.is_set()
    finally:  # neither outlives the look (a poll every few seconds must not pile up waiters)
        waiter.cancel()
        sleeper.cancel()


class InboxPickup:
    def __init__(self, runtime: Runtime, intake: Intake) -> None:
        self._rt = runtime
        self._intake = intake
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        wakeups = await self._rt.store.inbox_wakeups()
        self._task = asyncio.get_running_loop().create_task(
            self._forever(wakeups or InboxWakeups()), name="inbox-pickup"
        )

    async def _forever(self, wakeups: InboxWakeups) -> None:
        rt = self._rt
        poll = rt.config.cluster.inbox_poll
        last_full = rt.clock.now()
        while True:
            woken = await _woken_or_polled(rt, wakeups.event)
            # Woken: the items the notifications named. At least every `inbox_poll` seconds,
            # woken or not (under steady traffic the poll's timer never runs out): every
            # open item, for what a lost notification or a session whose owner lapsed left
            # there, and to forget the items turned into turns.
            named = wakeups.take()
            if not woken or rt.clock.now() - last_full >= poll:
                named = None
                last_full = rt.clock.now()
            if not rt.accepting_turns:
                continue
            try:
                picked = await self._intake.pick_up(named)
            except StoreError as error:  # the next look tries again
                log.warning("inbox pickup failed: %s", error)
                continue
            if picked:
                log.info("picked up %d inbox item(s) for sessions this node owns", picked)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
