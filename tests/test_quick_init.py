"""quick_frozen_init: the faster __init__ builds exactly what the dataclass's own builds, with
the same signature, for every class of gateway_core it is applied to."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pickle
import pkgutil
from dataclasses import dataclass, field
from typing import Any

import pytest

import gateway_core
from gateway_core.quick_init import quick_frozen_init


def _decorated() -> list[type[Any]]:
    found: dict[str, type[Any]] = {}
    for module_info in pkgutil.walk_packages(gateway_core.__path__, "gateway_core."):
        module = importlib.import_module(module_info.name)
        for value in vars(module).values():
            if isinstance(value, type) and "__dataclass_init__" in value.__dict__:
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return [found[name] for name in sorted(found)]


DECORATED = _decorated()


def _shape(init: Any) -> list[tuple[str, Any]]:
    return [(p.name, p.kind) for p in inspect.signature(init).parameters.values()]


def _built_both_ways(cls: type[Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    theirs = object.__new__(cls)
    cls.__dataclass_init__(theirs, *args, **kwargs)
    ours = cls(*args, **kwargs)
    for f in dataclasses.fields(ours):
        assert getattr(ours, f.name) == getattr(theirs, f.name), f.name
    assert ours == theirs and repr(ours) == repr(theirs)


def test_the_hot_path_classes_are_the_ones_decorated() -> None:
    names = {cls.__name__ for cls in DECORATED}
    assert {"NewMessage", "OutboxItem", "TurnRequest", "TurnContext", "TurnStarted"} <= names


@pytest.mark.parametrize("cls", DECORATED, ids=lambda cls: cls.__name__)
def test_same_signature_same_values(cls: type[Any]) -> None:
    assert _shape(cls.__init__) == _shape(cls.__dataclass_init__)
    ours = inspect.signature(cls.__init__).parameters
    theirs = inspect.signature(cls.__dataclass_init__).parameters
    required: dict[str, Any] = {}
    every: dict[str, Any] = {}
    for name, parameter in theirs.items():
        if name == "self":
            continue
        if parameter.default is inspect.Parameter.empty:
            required[name] = f"<{name}>"
        elif cls.__dataclass_fields__[name].default_factory is dataclasses.MISSING:
            assert ours[name].default is parameter.default  # the same default object
        every[name] = f"<{name} given>"
    _built_both_ways(cls, (), required)  # defaults and default factories
    _built_both_ways(cls, (), every)
    positional = [
        every[name]
        for name, parameter in theirs.items()
        if name != "self" and parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    ]
    keyword = {
        name: every[name]
        for name, parameter in theirs.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    _built_both_ways(cls, tuple(positional), keyword)


@quick_frozen_init
@dataclass(frozen=True, slots=True)
class _Sample:
    a: int
    b: list[int] = field(default_factory=list)
    c: str = "c"
    d: int = field(default=4, kw_only=True)


def test_defaults_factories_keyword_only_and_still_frozen() -> None:
    first, second = _Sample(1), _Sample(1)
    assert first.b == [] and first.b is not second.b  # a fresh list each time
    assert _Sample(1, [2], "x", d=5) == _Sample(a=1, b=[2], c="x", d=5)
    assert dataclasses.replace(first, c="y") == _Sample(1, [], "y", d=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.a = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        _Sample(1, [], "c", 4)  # type: ignore[call-arg]  # d is keyword-only, as the dataclass says
    with pytest.raises(TypeError):
        _Sample()  # type: ignore[call-arg]


@pytest.mark.parametrize("cls", DECORATED, ids=lambda cls: cls.__name__)
def test_a_pickled_value_comes_back_equal(cls: type[Any]) -> None:
    values = {
        name: f"<{name}>"
        for name, parameter in inspect.signature(cls.__dataclass_init__).parameters.items()
        if name != "self"
    }
    original = cls(**values)
    copy = pickle.loads(pickle.dumps(original, protocol=pickle.HIGHEST_PROTOCOL))
    assert type(copy) is cls and copy == original and repr(copy) == repr(original)


def test_refuses_what_it_would_get_wrong() -> None:
    @dataclass(slots=True)
    class NotFrozen:
        a: int

    @dataclass(frozen=True, slots=True)
    class WithPostInit:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclass(frozen=True, slots=True)
    class WithoutInitField:
        a: int
        b: int = field(default=0, init=False)

    @dataclass(frozen=True)
    class NoSlots:
        a: int

    for cls in (NotFrozen, WithPostInit, WithoutInitField, NoSlots):
        with pytest.raises(TypeError):
            quick_frozen_init(cls)
