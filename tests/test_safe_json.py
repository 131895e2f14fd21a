"""parse_json gives json.loads' value for every text json.loads reads, and None for every text
it refuses (its fast path for the store's own texts must never answer differently)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway_core.safe_json import parse_json


def _loads_or_none(text: str | bytes) -> object:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _same(text: str | bytes) -> bool:
    """parse_json(text) is what json.loads gives (NaN included: compared as written back)."""
    return json.dumps(parse_json(text)) == json.dumps(_loads_or_none(text))


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
_space = st.sampled_from(["", " ", "\n", "\t ", "\r\n"])


@settings(max_examples=300, deadline=None)
@given(value=_values, before=_space, after=_space, extra=st.sampled_from(["", "x", "1", "{}"]))
def test_a_json_text_with_or_without_whitespace_or_extra_data(
    value: object, before: str, after: str, extra: str
) -> None:
    text = before + json.dumps(value) + after + extra
    assert _same(text)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=30))
def test_any_text(text: str) -> None:
    assert _same(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"platform": "loopback", "chat_id": "1"}',
        ' {"a": 1}',
        '{"a": 1} ',
        '{"a": 1}{"b": 2}',
        "\ufeff{}",
        "NaN",
        "[1, 2",
        "",
        b'{"a": 1}',
        b"\xff",
        "[" * 100_000 + "]" * 100_000,
    ],
)
def test_edge_cases(text: str | bytes) -> None:
    assert _same(text)


def test_what_is_not_a_text_is_none() -> None:
    assert parse_json(None) is None
    assert parse_json(12) is None
