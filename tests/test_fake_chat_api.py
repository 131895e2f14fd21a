"""The fake chat-completions server, driven by a real aiohttp client over loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.support.fake_chat_api import (
    DEFAULT_MODEL,
    NO_SCRIPTED_REPLY,
    FakeChatAPI,
    text_reply,
    tool_calls_reply,
)

KEY = "sk-test"
USER = [{"role": "user", "content": "hello there"}]


@pytest.fixture
async def fake() -> AsyncIterator[FakeChatAPI]:
    async with FakeChatAPI() as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as client:
        yield client


def chat_body(stream: bool = False, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "gpt-test", "messages": USER, **extra}
    if stream:
        body["stream"] = True
    return body


async def post(
    session: aiohttp.ClientSession,
    fake: FakeChatAPI,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    payload = chat_body() if body is None else body
    async with session.post(
        f"{fake.base_url}/chat/completions", json=payload, headers=headers
    ) as response:
        return response.status, await response.json()


async def read_events(response: aiohttp.ClientResponse) -> tuple[list[dict[str, Any]], bool]:
    """The JSON chunks of an SSE stream and whether ``[DONE]`` closed it; checks the framing."""
    events: list[dict[str, Any]] = []
    raw = (await response.read()).decode()
    assert raw.endswith("\n\n")
    for block in raw.split("\n\n")[:-1]:
        assert block.startswith("data: "), block
        data = block.removeprefix("data: ")
        if data == "[DONE]":
            return events, True
        events.append(json.loads(data))
    return events, False


async def stream(
    session: aiohttp.ClientSession, fake: FakeChatAPI, **extra: Any
) -> list[dict[str, Any]]:
    async with session.post(
        f"{fake.base_url}/chat/completions", json=chat_body(stream=True, **extra)
    ) as response:
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        events, done = await read_events(response)
    assert done
    assert all(event["object"] == "chat.completion.chunk" for event in events)
    assert len({event["id"] for event in events}) == 1
    return events


def reassemble(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Fold the deltas the way an OpenAI client does."""
    message: dict[str, Any] = {"content": "", "tool_calls": {}}
    finish = None
    for event in events:
        for choice in event["choices"]:
            delta = choice["delta"]
            if "role" in delta:
                message["role"] = delta["role"]
            message["content"] += delta.get("content") or ""
            for call in delta.get("tool_calls", []):
                slot = message["tool_calls"].setdefault(
                    call["index"], {"id": None, "name": "", "arguments": ""}
                )
                slot["id"] = call.get("id") or slot["id"]
                function = call.get("function", {})
                slot["name"] += function.get("name") or ""
                slot["arguments"] += function.get("arguments") or ""
            finish = choice["finish_reason"] or finish
    message["finish_reason"] = finish
    message["tool_calls"] = [message["tool_calls"][i] for i in sorted(message["tool_calls"])]
    return message


async def test_text_reply_is_a_full_chat_completion(
    fake: FakeChatAPI, session: aiohttp.ClientSession
) -> None:
    fake.reply_text("hi", usage=(7, 2))
    status, body = await post(session, fake)
    assert status == 200
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert isinstance(body["created"], int)
    assert body["model"] == "gpt-test"
    assert body["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ]
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    assert fake.pending_replies == 0


async def test_replies_are_served_in_order_with_estimated_usage(
    fake: FakeChatAPI, session: aiohttp.ClientSession
) -> None:
    fake.reply_text("one")
    fake.reply_text("two", finish_reason="length")
    _, first = await post(session, fake, {"messages": USER})
    _, second = await post(session, fake)
    assert first["choices"][0]["message"]["content"] == "one"
    assert first["model"] == DEFAULT_MODEL
    assert second["choices"][0]["message"]["content"] == "two"
    assert second["choices"][0]["finish_reason"] == "length"
    usage = first["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_tool_calls_carry_json_string_arguments(
    fake: FakeChatAPI, session: aiohttp.ClientSession
) -> None:
    fake.reply_tool_calls(
        [("call_1", "terminal", {"command": "ls"}), (None, "process", '{"action": "li')],
        usage=(10, 4),
    )
    _, body = await post(session, fake)
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["role"] == "assistant"
    assert message["content"] is None
    first, second = message["tool_calls"]
    assert first == {
        "id": "call_1",
        "type": "function",
        "function": {"name": "terminal", "arguments": '{"command": "ls"}'},
    }
    assert json.loads(first["function"]["arguments"]) == {"command": "ls"}
    assert second["id"].startswith("call_") and second["id"] != "call_1"
    assert second["function"] == {"name": "process", "arguments": '{"action": "li'}


async def test_tool_calls_with_text_keep_the_content(
    fake: FakeChatAPI, session: aiohttp.ClientSession
) -> None:
    fake.reply_tool_calls([("call_9", "terminal", {"command": "pwd"})], text="Checking.")
    _, body = await post(session, fake)
    assert body["choices"][0]["message"]["content"] == "Checking."


async def test_streamed_text_reassembles(fake: FakeChatAPI, session: aiohttp.ClientSession) -> None:
    fake.reply_text("Hello there, how are you?")
    fake.reply_text(chunks=["Hel", "lo"])
    events = await stream(session, fake)
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    pieces = [e["choices"][0]["delta"].get("content") for e in events[1:-1]]
    assert len(pieces) > 1
    assert events[-1]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert all("usage" not in event for event in events)
    message = reassemble(events)
    assert message["role"] == "assistant"
    assert message["content"] == "Hello there, how are you?"
    assert message["finish_reason"] == "stop"
    assert message["tool_calls"] == []

    events = await stream(session, fake)
    assert [e["choices"][0]["delta"].get("content") for e in events[1:-1]] == ["Hel", "lo"]
    assert reassemble(events)["content"] == "Hello"


async def test_streamed_tool_call_deltas_reassemble(
    fake: FakeChatAPI, session: aiohttp.ClientSession
) -> None:
    arguments = {"command": "ls -la /tmp && echo done", "timeout": 30}
    fake.reply_tool_calls(
        [("call_1", "terminal", arguments), ("call_2", "process", {"action": "list"})]
    )
    events = await stream(session, fake)
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": None}
    heads = [
        call
        for event in events
        for choice in event["choices"]
        for call in choice["delta"].get("tool_calls", [])
        if "id" in call
    ]
    assert [(h["index"], h["id"], h["function"]["name"]) for h in heads] == [
        (0, "call_1", "terminal"),
        (1, "call_2", "process"),
    ]
    fragments = [
        call["function"]["arguments"]
        for event in events
        for call in event["choices"][0]["delta"].get("tool_calls", [])
        if call["index"] == 0 and "id" not in call
    ]
    assert len(fragments) > 1
    message = reassemble(events)
    assert message["finish_reason"] == "tool_calls"
    assert message["content"] == ""
    assert [(c["id"], c["name"]) for c in message["tool_calls"]] == [
        ("call_1", "terminal"),
        ("call_2", "process"),
    ]
    assert json.loads(message["tool_calls"][0]["arguments"]) == arguments
    assert json.loads(message["tool_calls"][1]["arguments"]) == {"action": "list"}


async def test_usage_chunk_when_include_usage(
    fake: FakeChatAPI, session: aiohttp.ClientSession
) -> None:
    fake.reply_text("counted", usage=(20, 3))
    events = await stream(session, fake, stream_options={"include_usage": True})
    *body, last = events
    assert last["choices"] == []
    assert last["usage"] == {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23}
    assert all(event["usage"] is None for event in body)
    assert body[-1]["choices"][0]["finish_reason"] == "stop"
    assert reassemble(events)["content"] == "counted"


async def test_errors_carry_status_body_and_headers(
    fake: FakeChatAPI, session: aiohttp.ClientSession
) -> None:
    fake.reply_error(429, "Rate limit reached", headers={"Retry-After": "2"})
    fake.reply_error(500, "The server had an error")
    fake.reply_error(400, "context_length_exceeded", code="context_length_exceeded")
    fake.reply_error(401, "bad key")
    url = f"{fake.base_url}/chat/completions"
    async with session.post(url, json=chat_body()) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "2"
        assert await response.json() == {
            "error": {
                "message": "Rate limit reached",
                "type": "requests",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        }
    # Errors come back as JSON even for a streaming request, as with OpenAI.
    async with session.post(url, json=chat_body(stream=True)) as response:
        assert response.status == 500
        assert response.content_type == "application/json"
        error = (await response.json())["error"]
        assert (error["message"], error["type"], error["code"]) == (
            "The server had an error",
            "server_error",
            None,
        )
    status, body = await post(session, fake)
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] == "context_length_exceeded"
    status, body = await post(session, fake)
    assert status == 401
    assert body["error"]["code"] == "invalid_api_key"


async def test_empty_queue_answers_500_loudly(
    fake: FakeChatAPI, session: aiohttp.ClientSession
) -> None:
    status, body = await post(session, fake)
    assert status == 500
    assert body["error"]["message"] == NO_SCRIPTED_REPLY
    assert "no scripted reply" in body["error"]["message"]


async def test_default_repeats_forever_after_the_queue(
    fake: FakeChatAPI, session: aiohttp.ClientSession
) -> None:
    fake.reply_text("first")
    fake.default(tool_calls_reply([(None, "terminal", {"command": "true"})]))
    _, body = await post(session, fake)
    assert body["choices"][0]["message"]["content"] == "first"
    ids = set()
    for _ in range(3):
        _, body = await post(session, fake)
        (call,) = body["choices"][0]["message"]["tool_calls"]
        assert call["function"]["name"] == "terminal"
        ids.add(call["id"])
    assert len(ids) == 3
    fake.default(None)
    status, _ = await post(session, fake)
    assert status == 500


async def test_raw_replies_are_sent_as_is(
    fake: FakeChatAPI, session: aiohttp.ClientSession
) -> None:
    fake.reply_raw(200, b'{"choices": [', "application/json")
    fake.reply_raw(502, b"<html>Bad Gateway</html>", "text/html")
    url = f"{fake.base_url}/chat/completions"
    async with session.post(url, json=chat_body()) as response:
        assert response.status == 200
        assert await response.read() == b'{"choices": ['
    async with session.post(url, json=chat_body(stream=True)) as response:
        assert response.status == 502
        assert response.content_type == "text/html"
        assert await response.text() == "<html>Bad Gateway</html>"


async def test_delay_then_client_cancel_registers_a_disconnect(
    fake: FakeChatAPI, session: aiohttp.ClientSession
) -> None:
    fake.reply_text("too late", delay=30)
    request = asyncio.create_task(post(session, fake))
    await fake.wait_for_requests(1)
    assert fake.disconnects == 0
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    await fake.wait_for_disconnect(timeout=1)
    assert fake.disconnects == 1
    assert fake.requests[0].disconnected
    # The server is still fine for the next request.
    fake.reply_text("ok")
    status, body = await post(session, fake)
    assert (status, body["choices"][0]["message"]["content"]) == (200, "ok")
    assert not fake.requests[1].disconnected
    assert fake.disconnects == 1


async def test_short_delay_is_honoured(fake: FakeChatAPI, session: aiohttp.ClientSession) -> None:
    fake.reply_error(503, "busy", delay=0.05)
    started = time.monotonic()
    status, _ = await post(session, fake)
    assert status == 503
    assert time.monotonic() - started >= 0.05


async def test_hang_after_stalls_the_stream_until_the_client_leaves(
    fake: FakeChatAPI, session: aiohttp.ClientSession
) -> None:
    fake.reply_text(chunks=["Hel", "lo", " world"], hang_after=2, chunk_delay=0.01)
    url = f"{fake.base_url}/chat/completions"
    async with session.post(url, json=chat_body(stream=True)) as response:
        assert response.status == 200
        first = json.loads((await response.content.readline()).removeprefix(b"data: "))
        assert first["choices"][0]["delta"]["role"] == "assistant"
        assert await response.content.readline() == b"\n"
        second = json.loads((await response.content.readline()).removeprefix(b"data: "))
        assert second["choices"][0]["delta"] == {"content": "Hel"}
        assert await response.content.readline() == b"\n"
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await response.content.readline()
        assert fake.disconnects == 0
        response.close()
    await fake.wait_for_disconnect(timeout=1)
    assert fake.requests[0].disconnected


async def test_hang_after_on_a_plain_request_never_answers(
    fake: FakeChatAPI, session: aiohttp.ClientSession
) -> None:
    fake.reply_text("never", hang_after=0)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await post(session, fake)
    await fake.wait_for_disconnect(timeout=1)


async def test_stop_ends_stalled_requests_without_counting_them(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeChatAPI() as fake:
        fake.reply_text("stuck", hang_after=1)
        url = f"{fake.base_url}/chat/completions"
        response = await session.post(url, json=chat_body(stream=True))
        await response.content.readline()
        started = time.monotonic()
        await fake.stop()
        assert time.monotonic() - started < 0.5
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
        response.release()
    assert fake.disconnects == 0


async def test_api_key_is_checked(session: aiohttp.ClientSession) -> None:
    async with FakeChatAPI(api_key=KEY) as fake:
        fake.reply_text("welcome")
        status, body = await post(session, fake)
        assert status == 401
        assert body["error"]["type"] == "invalid_request_error"
        assert body["error"]["code"] == "invalid_api_key"
        assert "API key" in body["error"]["message"]
        status, body = await post(session, fake, headers={"Authorization": "Bearer sk-wrong"})
        assert status == 401
        assert "sk-wrong" in body["error"]["message"]
        assert fake.pending_replies == 1
        status, body = await post(session, fake, headers={"Authorization": f"Bearer {KEY}"})
        assert status == 200
        assert body["choices"][0]["message"]["content"] == "welcome"
        assert len(fake.requests) == 3


async def test_requests_are_recorded(fake: FakeChatAPI, session: aiohttp.ClientSession) -> None:
    fake.reply_text("a")
    fake.reply_text("b")
    tools = [{"type": "function", "function": {"name": "terminal", "parameters": {}}}]
    waiting = asyncio.create_task(fake.wait_for_requests(2))
    await post(session, fake, chat_body(tools=tools), headers={"X-Trace": "t1"})
    assert not waiting.done()
    follow_up = [*USER, {"role": "assistant", "content": "a"}, {"role": "user", "content": "more"}]
    await post(session, fake, {"model": "gpt-test", "messages": follow_up})
    recorded = await waiting
    assert [r.path for r in recorded] == ["/v1/chat/completions"] * 2
    first = recorded[0]
    assert first.method == "POST"
    assert first.headers["x-trace"] == "t1"
    assert first.headers["content-type"] == "application/json"
    assert first.json == chat_body(tools=tools)
    assert first.messages == USER
    assert not first.stream
    assert fake.last_messages() == follow_up


async def test_bad_bodies_and_paths_are_recorded_without_using_a_reply(
    fake: FakeChatAPI, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(LookupError):
        fake.last_messages()
    fake.reply_text("kept")
    url = f"{fake.base_url}/chat/completions"
    async with session.post(url, data=b"{not json", headers={"Content-Type": "x"}) as response:
        assert response.status == 400
        assert "error" in await response.json()
    status, body = await post(session, fake, {"model": "gpt-test"})
    assert status == 400
    assert "messages" in body["error"]["message"]
    async with session.get(f"{fake.base_url}/models") as response:
        assert response.status == 404
        assert (await response.json())["error"]["message"] == "Invalid URL (GET /v1/models)"
    assert fake.pending_replies == 1
    assert fake.requests[0].json is None
    assert fake.requests[0].body == b"{not json"
    assert fake.requests[2].path == "/v1/models"
    assert fake.last_messages() == []


def test_reply_builders_reject_nonsense() -> None:
    with pytest.raises(ValueError):
        text_reply()
    with pytest.raises(ValueError):
        text_reply("Hello", chunks=["Hel", "p"])
    with pytest.raises(ValueError):
        text_reply("x", delay=-1)
    with pytest.raises(ValueError):
        tool_calls_reply([])
    assert text_reply(chunks=["a", "b"]).text == "ab"
