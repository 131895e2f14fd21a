"""The hot path's JSON text (an inbox payload, a stored origin) is exactly what json.dumps
writes: rows written before and after it was hand-built read back the same."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from gateway_core.model import ChatKind, Origin
from gateway_core.store.codec import decode_origin, encode_origin, encode_text_payload

texts = st.text()
maybe = st.none() | st.text()


@given(texts)
def test_a_payload_is_the_text_as_json_dumps_writes_it(text: str) -> None:
    assert encode_text_payload(text) == json.dumps({"text": text})


@given(st.text(), st.text(), maybe, maybe, maybe, st.none() | st.sampled_from(ChatKind))
def test_an_origin_is_stored_as_json_dumps_writes_it_and_reads_back(
    platform: str,
    chat_id: str,
    thread_id: str | None,
    user_id: str | None,
    user_name: str | None,
    chat_kind: ChatKind | None,
) -> None:
    origin = Origin(platform, chat_id, thread_id, user_id, user_name, chat_kind)
    as_dict = {
        "platform": platform,
        "chat_id": chat_id,
        "thread_id": thread_id,
        "user_id": user_id,
        "user_name": user_name,
        "chat_kind": None if chat_kind is None else str(chat_kind),
    }
    text = encode_origin(origin)
    assert text == json.dumps(as_dict)
    assert decode_origin(text) == origin


def test_hostile_text_stays_escaped() -> None:
    text = '\x1b[31m"quoted"\\ \u2028 🙂'
    payload = encode_text_payload(text)
    assert "\x1b" not in payload and json.loads(payload) == {"text": text}
