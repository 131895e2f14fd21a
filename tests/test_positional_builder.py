"""The fast constructors the recovery scan builds its values with give the same values."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from gateway_core.model import (
    ChatKind,
    Decision,
    Message,
    Origin,
    RecoveryAction,
    RecoveryRecord,
    RecoveryState,
    Session,
    SessionKey,
    Told,
    ToolCall,
    Verdict,
)
from gateway_core.quick_init import positional_builder
from gateway_core.recovery.decision import Classification
from gateway_core.recovery.startup import Candidate

KEY = SessionKey("loopback", "c", "t")
ORIGIN = Origin("loopback", "c", "t", "u", "Ada", ChatKind.PRIVATE)
RECORD = RecoveryRecord(7, RecoveryState.HELD, "crash", 1.0, "stale", "old", 2, 3.0, 4.0, Told.HELD)
DECISION = Decision(Verdict.STALE, RecoveryAction.CLEAR, "old", 1.0, 2.0, ("x",), (), "n", None)

VALUES: list[tuple[type[Any], tuple[Any, ...]]] = [
    (SessionKey, ("loopback", "c", None)),
    (Origin, ("loopback", "c", "t", "u", "Ada", ChatKind.GROUP)),
    (Session, (7, KEY, ORIGIN, 3, 1.0, 2.0)),
    (Message, (7, 2, "assistant", "hi", "text", (ToolCall("c1", "t"),), None, None, "stop")),
    (Message, (7, 3, "tool", "ok", "tool_recovered", (), "c1", "t", None, 1, 5.0, True, "p", "r")),
    (RecoveryRecord, tuple(getattr(RECORD, f.name) for f in dataclasses.fields(RecoveryRecord))),
    (Decision, tuple(getattr(DECISION, f.name) for f in dataclasses.fields(Decision))),
    (Classification, (Verdict.RESUMABLE, "why", 1.0, 2.0, ("t",), (), True, False)),
    (Candidate, (RECORD, Session(7, KEY, None, 0, 1.0, 1.0), DECISION, 12)),
]


@pytest.mark.parametrize(("cls", "values"), VALUES)
def test_the_builder_builds_what_the_constructor_builds(
    cls: type[Any], values: tuple[Any, ...]
) -> None:
    # The builder takes every field: the defaults a short tuple leaves out are filled in here.
    constructed = cls(*values)
    values = tuple(getattr(constructed, field.name) for field in dataclasses.fields(cls))
    built = positional_builder(cls)(*values)
    assert type(built) is cls
    assert built == constructed and hash(built) == hash(constructed)
    assert repr(built) == repr(constructed)
    for field in dataclasses.fields(cls):
        assert getattr(built, field.name) is getattr(constructed, field.name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(built, dataclasses.fields(cls)[0].name, None)


def test_the_builder_takes_every_field_and_no_more() -> None:
    build = positional_builder(SessionKey)
    with pytest.raises(TypeError):
        build("loopback", "c")
    with pytest.raises(TypeError):
        build("loopback", "c", None, "extra")
