"""Telegram polling while the store cannot take writes: the batch is not confirmed, polling
goes on, and the same updates are stored once the store is back (nothing lost, nothing
twice)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from gateway_core.adapters.telegram import TelegramAdapter
from gateway_core.agents.scripted import ScriptedAgent
from gateway_core.clock import ManualClock
from gateway_core.gateway import Gateway
from gateway_core.store import DATABASE_NAME
from tests.support.fake_bot_api import FakeBotAPI
from tests.support.harness import Stops, make_config, track

ADA = 7


async def test_polling_outlives_a_store_that_fails_for_a_while(
    tmp_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    async with FakeBotAPI() as fake:
        config = make_config(
            tmp_path / "state", store={"busy_timeout": 0.2}, notifier={"interval": 0}
        )
        adapter = TelegramAdapter(
            fake.token, api_base=fake.base_url, allowed_users=[ADA], clock=clock, poll_timeout=1
        )
        gateway = Gateway(config, agent=ScriptedAgent(), adapters=[adapter], clock=clock)
        await gateway.start()
        track(Stops(gateway))
        await fake.wait_for_parked_poll()
        other = sqlite3.connect(config.gateway.state_dir / DATABASE_NAME, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            update_id = fake.push_text(ADA, "hello", user_id=ADA)
            await clock.wait_for_sleepers(1, within=10)  # the backoff after the failed commit
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert any("could not be stored" in r.getMessage() for r in caplog.records)
        assert (fake.confirmed_offset or 0) <= update_id  # not confirmed: it comes again
        clock.advance(2)
        await fake.wait_for_sent(ADA)
        await fake.wait_until(lambda: fake.pending_updates() == [])
        assert fake.sent(ADA) == ["You said: hello"]
