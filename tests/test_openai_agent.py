"""The openai agent against a fake chat-completions server on loopback, in a real gateway.

Real HTTP (aiohttp) to tests/support/fake_chat_api.py, a real store, real tool processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway_core.adapters.loopback import LoopbackAdapter
from gateway_core.agents.openai import OpenAIAgent
from gateway_core.clock import Clock, ManualClock, SystemClock
from gateway_core.events import BackgroundNotice, TurnFinished
from gateway_core.gateway import Gateway
from gateway_core.model import MessageKind, Role
from tests.support.fake_chat_api import FakeChatAPI, tool_calls_reply
from tests.support.harness import Running, make_config, next_event, track

KEY = "sk-test-very-secret"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
async def fake() -> AsyncIterator[FakeChatAPI]:
    async with FakeChatAPI(api_key=KEY) as server:
        yield server


async def start(
    tmp_path: Path, clock: Clock, fake: FakeChatAPI, **agent: Any
) -> tuple[Running, OpenAIAgent]:
    interval = agent.pop("interval", 0)
    settings = {"kind": "openai", "base_url": fake.base_url, "model": "m1", "stream": False}
    config = make_config(tmp_path / "s", agent=settings | agent, notifier={"interval": interval})
    openai = OpenAIAgent(config.agent, env={"OPENAI_API_KEY": KEY})
    adapter = LoopbackAdapter()
    gateway = Gateway(config, agent=openai, adapters=[adapter], clock=clock)
    await gateway.start()
    return track(Running(gateway, adapter)), openai


async def transcript(running: Running, chat: str = "ada") -> list[Any]:
    lane = next(x for x in running.gateway.lanes.all() if x.session.key.chat_id == chat)
    return await running.gateway.store.transcript.all(lane.session.id)


async def test_a_plain_answer_sends_history_and_tools_and_records_usage(
    tmp_path: Path, clock: ManualClock, fake: FakeChatAPI
) -> None:
    running, _ = await start(tmp_path, clock, fake)
    fake.reply_text("Hi Ada.", usage=(12, 3))
    ada = running.adapter.user("ada")
    await ada.say("hello")
    assert [m.text for m in await ada.wait_for(1)] == ["Hi Ada."]

    (request,) = fake.chat_requests()
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.json is not None and request.json["model"] == "m1"
    assert {t["function"]["name"] for t in request.json["tools"]} >= {"terminal", "process"}
    assert request.messages[-1] == {"role": "user", "content": "hello"}
    rows = await transcript(running)
    usage = [json.loads(r.content) for r in rows if r.kind == MessageKind.META]
    assert usage == [{"prompt_tokens": 12, "completion_tokens": 3}]
    snap = running.gateway.snapshot()
    assert (snap.counts.prompt_tokens, snap.counts.completion_tokens) == (12, 3)
    assert snap.sessions[0].tokens == (12, 3)


async def test_a_background_job_completion_comes_back_as_a_later_turn_in_its_session(
    tmp_path: Path, clock: ManualClock, fake: FakeChatAPI
) -> None:
    running, _ = await start(tmp_path, clock, fake)
    events = running.gateway.events.subscribe()
    go = tmp_path / "go"
    job = f"for i in $(seq 400); do [ -e {go} ] && break; sleep 0.025; done; echo built-ok"
    fake.reply_tool_calls(
        [("c1", "terminal", {"command": job, "background": True, "notify_on_complete": True})]
    )
    fake.reply_text("Started the build; I will tell you when it is done.")
    ada, bob = running.adapter.user("ada"), running.adapter.user("bob")
    await ada.say("build it")
    await ada.wait_for(1)
    fake.reply_text("Hi Bob.")
    await bob.say("hi")  # another conversation in the foreground
    await bob.wait_for(1)
    fake.reply_text("The build finished: built-ok.")
    go.touch()

    notice = await next_event(events, BackgroundNotice, within=20)
    while notice.outcome == "queued":
        notice = await next_event(events, BackgroundNotice, within=20)
    assert notice.outcome == "delivered"
    assert [m.text for m in await ada.wait_for(2)][1] == "The build finished: built-ok."
    told = fake.chat_requests()[-1].messages[-1]
    assert told["role"] == "user" and "built-ok" in told["content"]
    assert "Internal notification" in told["content"]
    assert [m.text for m in bob.received()] == ["Hi Bob."]


async def test_streamed_text_is_previewed_in_the_notice_then_replaced_by_the_answer(
    tmp_path: Path, clock: ManualClock, fake: FakeChatAPI
) -> None:
    running, _ = await start(tmp_path, clock, fake, stream=True, interval=60)
    fake.reply_text(chunks=["The answer ", "is ", "forty-two."], chunk_delay=0.3)
    ada = running.adapter.user("ada")
    await ada.say("question")
    await fake.wait_for_requests(1)
    # A preview waits a second (a quick answer needs none): move the turn's clock past it.
    async with asyncio.timeout(20):
        while not any(m.text == "The answer is forty-two." for m in running.adapter.messages):
            clock.advance(0.5)
            await asyncio.sleep(0.05)  # the stream arrives in real time, the clock is manual
    (request,) = fake.chat_requests()
    assert request.stream and request.include_usage
    previews = [m for m in running.adapter.messages if "Still working" in m.text]
    assert previews and "The answer" in previews[0].text
    assert all(m.deleted for m in previews)  # the answer replaced the notice
    assert [m.text for m in ada.received()] == ["The answer is forty-two."]


async def test_without_streaming_the_request_asks_for_a_whole_answer(
    tmp_path: Path, clock: ManualClock, fake: FakeChatAPI
) -> None:
    running, _ = await start(tmp_path, clock, fake)
    fake.reply_text("whole")
    ada = running.adapter.user("ada")
    await ada.say("hello")
    await ada.wait_for(1)
    assert not fake.chat_requests()[0].stream


async def test_429_and_5xx_are_retried_then_the_answer_arrives(
    tmp_path: Path, clock: ManualClock, fake: FakeChatAPI
) -> None:
    running, _ = await start(tmp_path, clock, fake)
    fake.reply_error(429, "slow down", headers={"Retry-After": "0"})
    fake.reply_error(503, "overloaded", headers={"Retry-After": "0"})
    fake.reply_text("finally")
    ada = running.adapter.user("ada")
    await ada.say("hello")
    assert [m.text for m in await ada.wait_for(1)] == ["finally"]
    assert len(fake.chat_requests()) == 3


async def test_any_5xx_but_not_implemented_is_retried(
    tmp_path: Path, clock: ManualClock, fake: FakeChatAPI
) -> None:
    running, _ = await start(tmp_path, clock, fake)
    fake.reply_error(529, "overloaded", headers={"Retry-After": "0"})
    fake.reply_error(520, "origin error", headers={"Retry-After": "0"})
    fake.reply_text("finally")
    ada = running.adapter.user("ada")
    await ada.say("hello")
    assert [m.text for m in await ada.wait_for(1)] == ["finally"]
    fake.reply_error(501, "not implemented")
    await ada.say("again")
    assert "HTTP 501" in (await ada.wait_for(2))[1].text
    assert len(fake.chat_requests()) == 4


async def test_a_server_that_keeps_failing_fails_the_turn_after_the_retry_limit(
    tmp_path: Path, clock: ManualClock, fake: FakeChatAPI
) -> None:
    running, _ = await start(tmp_path, clock, fake, max_retries=2)
    for _ in range(3):
        fake.reply_error(500, "boom", headers={"Retry-After": "0"})
    ada = running.adapter.user("ada")
    await ada.say("hello")
    (reply,) = await ada.wait_for(1)
    assert reply.text.startswith("⚠️ Sorry, this turn failed: AgentError: the agent server kept")
    assert len(fake.chat_requests()) == 3


@pytest.mark.parametrize(("status", "extra"), [(400, "bad model name"), (401, "OPENAI_API_KEY")])
async def test_400_and_401_fail_the_turn_at_once_with_a_clear_message(
    tmp_path: Path, clock: ManualClock, fake: FakeChatAPI, status: int, extra: str
) -> None:
    running, _ = await start(tmp_path, clock, fake)
    fake.reply_error(status, f"bad model name; your key {KEY} is wrong")
    ada = running.adapter.user("ada")
    await ada.say("hello")
    (reply,) = await ada.wait_for(1)
    assert f"HTTP {status}" in reply.text and extra in reply.text
    assert KEY not in reply.text  # never echoed, even when the server quotes it
    assert len(fake.chat_requests()) == 1  # no retry


async def test_a_malformed_answer_fails_the_turn_and_the_gateway_goes_on(
    tmp_path: Path, clock: ManualClock, fake: FakeChatAPI
) -> None:
    running, _ = await start(tmp_path, clock, fake)
    fake.reply_raw(200, b'{"choices": "nope"}')
    fake.reply_text("still here")
    ada = running.adapter.user("ada")
    await ada.say("hello")
    (reply,) = await ada.wait_for(1)
    assert "malformed" in reply.text
    await ada.say("again")
    assert [m.text for m in await ada.wait_for(2)][1] == "still here"


async def test_tool_arguments_that_are_not_json_are_recorded_and_fail_the_turn(
    tmp_path: Path, clock: ManualClock, fake: FakeChatAPI
) -> None:
    running, _ = await start(tmp_path, clock, fake)
    fake.reply_tool_calls([("c1", "terminal", '{"command": "echo x"')])  # cut short
    ada = running.adapter.user("ada")
    await ada.say("run it")
    (reply,) = await ada.wait_for(1)
    assert "not JSON" in reply.text
    rows = await transcript(running)
    (call,) = [r for r in rows if r.tool_calls]
    (result,) = [r for r in rows if r.role == Role.TOOL]
    assert call.tool_calls[0].arguments == '{"command": "echo x"'
    assert result.tool_call_id == "c1" and "not run" in result.content


async def test_a_model_that_never_stops_calling_tools_hits_the_step_limit(
    tmp_path: Path, clock: ManualClock, fake: FakeChatAPI
) -> None:
    running, _ = await start(tmp_path, clock, fake, max_steps=3)
    fake.default(tool_calls_reply([(None, "clock", {})]))
    ada = running.adapter.user("ada")
    await ada.say("loop forever")
    (reply,) = await ada.wait_for(1)
    assert "step limit" in reply.text
    assert len(fake.chat_requests()) == 3
    rows = await transcript(running)
    assert sum(1 for r in rows if r.role == Role.TOOL) == 3
    assert rows[-2].finish_reason == "length"  # the answer; the usage row follows it


async def test_an_interrupt_cancels_the_http_request_and_records_no_answer(
    tmp_path: Path, clock: ManualClock, fake: FakeChatAPI
) -> None:
    running, _ = await start(tmp_path, clock, fake)
    events = running.gateway.events.subscribe()
    fake.reply_text("too late", delay=30)
    ada = running.adapter.user("ada")
    await ada.say("think hard")
    await fake.wait_for_requests(1)
    lane = running.gateway.lanes.all()[0]
    assert running.gateway.lanes.interrupt(lane.session.id)
    finished = await next_event(events, TurnFinished)
    assert finished.outcome == "interrupted"
    await fake.wait_for_disconnect()
    rows = await transcript(running)
    assert not any(r.role == Role.ASSISTANT for r in rows)


async def _line(process: asyncio.subprocess.Process) -> bytes:
    assert process.stdout is not None
    return await asyncio.wait_for(process.stdout.readline(), 30)


@pytest.mark.slow
async def test_sigkill_between_two_tool_calls_resumes_without_rerunning_the_first(
    tmp_path: Path, fake: FakeChatAPI
) -> None:
    state_dir, ran = tmp_path / "s", tmp_path / "ran.txt"
    fake.reply_tool_calls([("c1", "terminal", {"command": f"echo once >> {ran}"})])
    fake.reply_text("never sent", delay=60)  # the model "thinks" when the gateway dies
    gateway = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.crash_gateway",
        "--state-dir", str(state_dir), "--journal", str(tmp_path / "journal"),
        "--no-traffic", "--say", "do the thing", "--no-wait", "--agent-url", fake.base_url,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "OPENAI_API_KEY": KEY},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert await _line(gateway) == b"READY\n"
        await fake.wait_for_requests(2, timeout=30)  # the tool ran; the second call waits
    finally:
        gateway.send_signal(signal.SIGKILL)
        await asyncio.wait_for(gateway.wait(), 15)
    assert ran.read_text() == "once\n"

    fake.reply_text("Done: the thing ran once.")
    running, _ = await start(tmp_path, SystemClock(), fake)  # same state dir "s"
    boot = running.gateway.boot
    assert boot is not None
    (candidate,) = boot.candidates
    assert candidate.decision.verdict.value == "resumable"
    user = running.adapter.user("u0")
    assert [m.text for m in await user.wait_for(1, within=20)] == ["Done: the thing ran once."]
    assert ran.read_text() == "once\n"  # not run again
    resumed = fake.chat_requests()[-1].messages
    assert any(m.get("tool_call_id") == "c1" for m in resumed)  # it saw the recorded result
    assert "[System note:" in resumed[-1]["content"]
