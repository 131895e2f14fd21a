"""The plain-attribute copies of the enums the recovery decision reads (members.py) hold every
member of each enum, as the very same objects, and nothing else."""

from __future__ import annotations

from enum import Enum

import pytest

from gateway_core.model import (
    Gate,
    MessageKind,
    RecoveryAction,
    RecoveryState,
    Role,
    Settlement,
    Told,
    TurnKind,
    Verdict,
)
from gateway_core.recovery import members

COPIES: list[tuple[type, type[Enum]]] = [
    (members.Verdicts, Verdict),
    (members.Actions, RecoveryAction),
    (members.Gates, Gate),
    (members.Roles, Role),
    (members.Kinds, MessageKind),
    (members.States, RecoveryState),
    (members.Settlements, Settlement),
    (members.Tolds, Told),
    (members.TurnKinds, TurnKind),
]


@pytest.mark.parametrize(("copy", "enum"), COPIES, ids=[e.__name__ for _, e in COPIES])
def test_each_copy_holds_every_member_of_its_enum_itself(copy: type, enum: type[Enum]) -> None:
    names = {name for name in vars(copy) if not name.startswith("_")}
    assert names == set(enum.__members__)
    for name, member in enum.__members__.items():
        assert getattr(copy, name) is member
