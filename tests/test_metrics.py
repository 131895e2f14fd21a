"""/metrics over real HTTP on a real gateway, parsed by prometheus_client.parser: values move
with traffic (messages, turns, queue, deliveries, recovery, agent requests, Telegram), names
follow the conventions, and no label names a chat, user or session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway_core.adapters.loopback import LoopbackAdapter
from gateway_core.adapters.telegram import TelegramAdapter
from gateway_core.agents.openai import OpenAIAgent
from gateway_core.agents.scripted import ScriptedAgent
from gateway_core.clock import ManualClock
from gateway_core.config import Config
from gateway_core.events import DeliveryFailed, TurnStarted
from gateway_core.gateway import Gateway
from gateway_core.service.http_surface import HttpSurface
from tests.support.fake_bot_api import FakeBotAPI
from tests.support.fake_chat_api import FakeChatAPI
from tests.support.harness import Stops, make_config, next_event, track
from tests.support.scrape import Samples, by, label_names, scrape, scrape_until, value

# Every label any switchboard_ metric may carry; none of them identifies a conversation.
ALLOWED_LABELS = {"platform", "outcome", "state", "verdict", "action", "kind", "code", "le"}


@pytest.fixture
async def surfaces() -> AsyncIterator[list[HttpSurface]]:
    opened: list[HttpSurface] = []
    yield opened
    for surface in opened:
        await surface.close()


async def serve(
    config: Config, gateway: Gateway, adapters: list[Any], opened: list[HttpSurface]
) -> str:
    surface = HttpSurface(config, gateway, adapters, probe_reuse=0, lag_interval=0.01)
    await surface.start()
    opened.append(surface)
    return surface.base_url


def config_for(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    sections = {"http": {"listen": "127.0.0.1:0"}, "notifier": {"interval": 0}, **sections}
    return make_config(tmp_path / "state", **sections)


def switchboard_only(samples: Samples) -> Samples:
    return {key: v for key, v in samples.items() if key[0].startswith("switchboard_")}


async def test_metrics_move_with_traffic(
    tmp_path: Path, clock: ManualClock, surfaces: list[HttpSurface]
) -> None:
    config = config_for(tmp_path, lanes={"max_queue": 1})
    adapter = LoopbackAdapter()
    gateway = Gateway(config, agent=ScriptedAgent(), adapters=[adapter], clock=clock)
    base = await serve(config, gateway, [adapter], surfaces)
    before = await scrape(base)
    assert value(before, "switchboard_gateway_state", state="stopped") == 1
    assert by(before, "switchboard_messages_received_total", "outcome", platform="loopback") == {
        "accepted": 0,
        "duplicate": 0,
        "skipped": 0,
        "refused": 0,
    }
    assert value(before, "switchboard_turns_total", outcome="completed") == 0

    await gateway.start()
    track(Stops(gateway))
    events = gateway.events.subscribe()
    ada, bob = adapter.user("ada"), adapter.user("bob")
    await ada.say("hello")
    await ada.wait_for(1)
    await bob.say("think 10")
    await next_event(events, TurnStarted)
    await clock.wait_for_sleepers(1)
    await bob.say("hello")  # queued behind the thinking turn
    await bob.say("and this")  # max_queue 1: refused, and bob is told so
    await bob.wait_for(1)

    def sent_to(samples: Samples) -> dict[str, float]:
        return by(samples, "switchboard_messages_sent_total", "outcome", platform="loopback")

    during = await scrape_until(base, lambda samples: sent_to(samples)["sent"] == 2)
    assert value(during, "switchboard_gateway_state", state="running") == 1
    assert value(during, "switchboard_gateway_state", state="stopped") == 0
    assert value(during, "switchboard_lanes_busy") == 1
    assert value(during, "switchboard_queue_depth") == 1
    assert value(during, "switchboard_sessions") == 2
    received = by(during, "switchboard_messages_received_total", "outcome", platform="loopback")
    assert received == {"accepted": 3, "duplicate": 0, "skipped": 0, "refused": 1}
    assert value(during, "switchboard_turns_total", outcome="completed") == 1
    assert value(during, "switchboard_turn_duration_seconds_count") == 1
    assert sent_to(during) == {"sent": 2, "failed": 0, "unknown": 0}  # ada's; bob's refusal

    clock.advance(10)
    await bob.wait_for(3)
    adapter.fail_next(1)  # the next send fails in a way worth retrying
    await ada.say("again")
    await next_event(events, DeliveryFailed)
    await clock.wait_for_sleepers(1)
    clock.advance(2)
    await ada.wait_for(2)
    after = await scrape_until(base, lambda samples: sent_to(samples)["sent"] == 5)
    assert value(after, "switchboard_turns_total", outcome="completed") == 4
    assert value(after, "switchboard_turn_duration_seconds_count") == 4
    assert value(after, "switchboard_turn_duration_seconds_sum") >= 10
    assert value(after, "switchboard_turn_duration_seconds_bucket", le="5.0") == 3
    assert value(after, "switchboard_lanes_busy") == 0
    assert value(after, "switchboard_queue_depth") == 0
    assert value(after, "switchboard_deliveries_retried_total", platform="loopback") == 1
    assert value(after, "switchboard_store_write_jobs_total") > 0
    assert value(after, "switchboard_store_write_busy_seconds_total") > 0
    assert await gateway.store.write_process_started()
    assert value(await scrape(base), "switchboard_store_write_process_up") == 1
    after_death = "switchboard_store_writes_after_process_died_total"
    assert value(after, after_death, outcome="rerun") == 0
    assert value(after, after_death, outcome="unknown") == 0
    assert value(after, "process_resident_memory_bytes") > 0
    async with asyncio.timeout(10):
        while value(await scrape(base), "switchboard_event_loop_lag_seconds_count") == 0:
            pass  # the sampler wakes every 10 ms of real time

    assert label_names(switchboard_only(after)) <= ALLOWED_LABELS
    names = {name for name, _ in switchboard_only(after)}
    counters = {name for name in names if name.endswith("_total")}
    assert "switchboard_messages_received_total" in counters
    assert all("_seconds" in name for name in names if "duration" in name or "lag" in name)


@pytest.mark.parametrize(("gate", "verdict_state"), [("safe", None), ("operator", "held")])
async def test_recovery_and_resumes_after_a_restart(
    tmp_path: Path,
    clock: ManualClock,
    surfaces: list[HttpSurface],
    gate: str,
    verdict_state: str | None,
) -> None:
    config = config_for(tmp_path, recovery={"gate": gate})
    adapter = LoopbackAdapter()
    gateway = Gateway(config, agent=ScriptedAgent(), adapters=[adapter], clock=clock)
    base = await serve(config, gateway, [adapter], surfaces)
    await gateway.start()
    track(Stops(gateway))
    ada = adapter.user("ada")
    await ada.say("think 1000")
    await clock.wait_for_sleepers(1)
    await gateway.restart(0)  # the turn is interrupted by the drain deadline
    if verdict_state is None:
        await ada.wait_for(1)  # the resumed turn answered
    samples = await scrape_until(
        base,
        lambda samples: (
            value(samples, "switchboard_turns_total", outcome="interrupted") == 1
            and (
                verdict_state is not None
                or value(samples, "switchboard_resumes_total", outcome="completed") == 1
            )
        ),
    )
    assert value(samples, "switchboard_turns_total", outcome="interrupted") == 1
    decided = {
        (dict(labels)["verdict"], dict(labels)["action"]): v
        for (name, labels), v in samples.items()
        if name == "switchboard_recovery_decisions_total"
    }
    if verdict_state is None:
        assert decided == {("resumable", "resume"): 1}
        assert value(samples, "switchboard_resumes_total", outcome="completed") == 1
    else:
        assert decided == {("resumable", "hold"): 1}
        assert value(samples, "switchboard_resumes_total", outcome="completed") == 0
        candidates = by(samples, "switchboard_recovery_candidates", "state", verdict="resumable")
        assert candidates == {"held": 1}


async def test_agent_request_durations_and_tokens(
    tmp_path: Path, clock: ManualClock, surfaces: list[HttpSurface]
) -> None:
    async with FakeChatAPI(api_key="k") as chat:
        settings = {"kind": "openai", "base_url": chat.base_url, "stream": False}
        config = config_for(tmp_path, agent=settings)
        agent = OpenAIAgent(config.agent, env={"OPENAI_API_KEY": "k"})
        adapter = LoopbackAdapter()
        gateway = Gateway(config, agent=agent, adapters=[adapter], clock=clock)
        base = await serve(config, gateway, [adapter], surfaces)
        await gateway.start()
        track(Stops(gateway))
        chat.reply_error(503, "busy")
        chat.reply_text("Hi.", usage=(12, 3))
        ada = adapter.user("ada")
        await ada.say("hello")
        await clock.wait_for_sleepers(1)  # the backoff after the 503
        clock.advance(1)
        await ada.wait_for(1)
        samples = await scrape_until(
            base,
            lambda samples: (
                value(samples, "switchboard_agent_request_duration_seconds_count", outcome="ok")
                == 1
            ),
        )
    requests = by(samples, "switchboard_agent_request_duration_seconds_count", "outcome")
    assert requests == {"ok": 1, "retryable": 1, "failed": 0}
    assert value(samples, "switchboard_agent_tokens_total", kind="prompt") == 12
    assert value(samples, "switchboard_agent_tokens_total", kind="completion") == 3


async def test_telegram_messages_by_outcome(
    tmp_path: Path, clock: ManualClock, surfaces: list[HttpSurface]
) -> None:
    async with FakeBotAPI() as fake:
        config = config_for(tmp_path)
        adapter = TelegramAdapter(
            fake.token, api_base=fake.base_url, allowed_users=[7], clock=clock, poll_timeout=1
        )
        gateway = Gateway(config, agent=ScriptedAgent(), adapters=[adapter], clock=clock)
        base = await serve(config, gateway, [adapter], surfaces)
        await gateway.start()
        track(Stops(gateway))
        events = gateway.events.subscribe()
        fake.push_text(7, "hello", user_id=7)
        fake.push_text(8, "intruder", user_id=8)  # not allowed: recorded, skipped
        fake.push_raw({"message": {"text": "no chat"}})  # malformed: recorded, skipped
        await fake.wait_for_sent(7)
        fake.drop_connection("sendMessage")  # the send may or may not have happened
        fake.push_text(7, "again", user_id=7)
        failed = await next_event(events, DeliveryFailed)
        assert failed.unknown and failed.platform == "telegram"
        samples = await scrape_until(
            base,
            lambda samples: (
                value(
                    samples,
                    "switchboard_messages_sent_total",
                    platform="telegram",
                    outcome="unknown",
                )
                == 1
            ),
        )
    assert value(samples, "switchboard_platform_up", platform="telegram") == 1
    received = by(samples, "switchboard_messages_received_total", "outcome", platform="telegram")
    assert received == {"accepted": 2, "duplicate": 0, "skipped": 2, "refused": 0}
    sent = by(samples, "switchboard_messages_sent_total", "outcome", platform="telegram")
    assert sent == {"sent": 1, "failed": 0, "unknown": 1}
