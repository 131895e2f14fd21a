"""Faster construction of the frozen slotted dataclasses built in bulk: per message on the hot
path, per row in the recovery scan.

A frozen dataclass's generated __init__ sets each field with `object.__setattr__(self, name,
value)`, a generic attribute store that goes through the name lookup every time. Built per
message (the rows written, the turn's request and context, the reply, five events) or per
stored row read at boot, those constructors were a few percent of the whole cost. Both tools
here store each field through its slot's own descriptor, bound once when the class is defined:

- `quick_frozen_init` replaces the class's __init__ with one of the same signature (names,
  order, defaults, default factories, keyword-only fields): the same object, about 40% faster
  to build. The class stays a frozen dataclass: equality, hashing, repr, `replace` and the
  frozen error on assignment are the dataclass's own. Refused, when the class is defined, for
  anything it would get wrong (not frozen, no slots, InitVar, init=False, __post_init__).
  tests/test_quick_init.py checks every class it is applied to against the dataclass's own.
  It also gets a `__reduce__` that pickles the field values in order and rebuilds with the
  positional builder below: the hot path's values cross to the store's writer process
  (store/write_process.py), and the dataclass's own pickling (its __getstate__ and
  __setstate__, in Python) cost more than the rest of the trip.
- `positional_builder` makes a separate constructor that takes every field positionally, with
  no defaults at all: about half the cost of the dataclass's own, for the store's decoders of
  stored rows (tests/test_positional_builder.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Any, TypeVar

T = TypeVar("T")

_NO_VALUE = object()  # stands for "use the default factory" in a generated signature


def _setters(cls: type[Any], names: list[str]) -> dict[str, Any]:
    """Each field's slot setter, bound once, under the name the generated code calls it by."""
    return {f"_set_{name}": getattr(cls, name).__set__ for name in names}


def _compile(source: str, scope: dict[str, Any], name: str) -> Any:
    exec(source, scope)  # the way dataclasses builds __init__ itself
    return scope[name]


def positional_builder(cls: type[T]) -> Callable[..., T]:
    """A constructor for a frozen slotted dataclass that takes every field positionally, in
    declaration order, and builds the same value as `cls(...)`. No defaults, no checks, no
    __post_init__ (the classes it is used for have none): readers of stored rows only."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    scope: dict[str, Any] = {"_new": object.__new__, "_cls": cls, **_setters(cls, names)}
    body = [f"    _set_{name}(self, {name})" for name in names]
    source = f"def build({', '.join(names)}):\n    self = _new(_cls)\n"
    build: Callable[..., T] = _compile(
        source + "\n".join([*body, "    return self"]), scope, "build"
    )
    return build


# The positional builder of every class quick_frozen_init decorated, for `rebuilt`.
_BUILDERS: dict[type[Any], Callable[..., Any]] = {}


def rebuilt(cls: type[T], values: tuple[Any, ...]) -> T:
    """A pickled value of a quick_frozen_init class, built again from its field values."""
    built: T = _BUILDERS[cls](*values)
    return built


def _reduce(cls: type[Any], names: list[str]) -> Any:
    scope: dict[str, Any] = {"_rebuilt": rebuilt, "_cls": cls}
    values = "".join(f"self.{name}, " for name in names)
    reduce = _compile(
        f"def __reduce__(self):\n    return (_rebuilt, (_cls, ({values})))", scope, "__reduce__"
    )
    reduce.__qualname__ = f"{cls.__qualname__}.__reduce__"
    return reduce


def quick_frozen_init(cls: type[T]) -> type[T]:
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    if not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__}: quick_frozen_init is for frozen slotted dataclasses")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: has __post_init__, which this __init__ would skip")
    if len(cls.__dataclass_fields__) != len(fields(cls)):  # type: ignore[attr-defined,arg-type]
        raise TypeError(f"{cls.__name__}: InitVar or ClassVar fields are not supported")
    # As dataclasses orders them: keyword-only fields after all the others.
    ordered = sorted(fields(cls), key=lambda f: bool(f.kw_only))  # type: ignore[arg-type]
    scope: dict[str, Any] = {"_NO_VALUE": _NO_VALUE, **_setters(cls, [f.name for f in ordered])}
    signature: list[str] = []
    body: list[str] = []
    keyword_only = False
    for f in ordered:
        name = f.name
        if not f.init:
            raise TypeError(f"{cls.__name__}.{name}: init=False fields are not supported")
        if f.kw_only and not keyword_only:
            signature.append("*")
            keyword_only = True
        if f.default is not MISSING:
            scope[f"_default_{name}"] = f.default
            signature.append(f"{name}=_default_{name}")
        elif f.default_factory is not MISSING:
            scope[f"_factory_{name}"] = f.default_factory
            signature.append(f"{name}=_NO_VALUE")
            body.append(f"    if {name} is _NO_VALUE: {name} = _factory_{name}()")
        else:
            signature.append(name)
        body.append(f"    _set_{name}(self, {name})")
    source = f"def __init__(self, {', '.join(signature)}):\n" + "\n".join(body or ["    pass"])
    init = _compile(source, scope, "__init__")
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    # The dataclass's own, kept for the test that compares the two.
    cls.__dataclass_init__ = cls.__init__  # type: ignore[attr-defined]
    cls.__init__ = init  # type: ignore[method-assign]
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    _BUILDERS[cls] = positional_builder(cls)
    cls.__reduce__ = _reduce(cls, names)  # type: ignore[method-assign]
    return cls
