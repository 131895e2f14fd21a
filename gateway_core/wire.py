"""Value types to JSON and back, for the control socket (one protocol, two transports).

The console and the CLI see the same Snapshot, Message and AuditEntry objects whether the
gateway is in-process or behind the socket. Encoding is plain dataclass fields (tuples become
lists); decoding rebuilds the dataclasses and fails with WireFormatError on anything missing
or mistyped, so a garbled peer gets a clear error instead of a half-built object.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, TypeVar

from gateway_core.control import ActionResult
from gateway_core.events import DrainPhase, DrainProgress
from gateway_core.log_ring import LogEntry
from gateway_core.model import AuditEntry, Message, ProcessState, RecoveryState, ToolCall
from gateway_core.notifiers import NotifierView
from gateway_core.runtime import GatewayState
from gateway_core.snapshot import (
    CandidateView,
    LoopGuardView,
    NodeStatus,
    NodeView,
    PreviousRun,
    ProcessView,
    SessionActivity,
    SessionView,
    Snapshot,
    SnapshotCounts,
)

T = TypeVar("T")


class WireFormatError(ValueError):
    pass


def encode(value: object) -> Any:
    """Dataclasses, tuples and mappings as JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [encode(item) for item in value]
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in value.items()}
    return value


def _build(cls: type[T], data: object, **nested: Any) -> T:
    if not isinstance(data, dict):
        raise WireFormatError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {name: data[name] for name in fields if name in data}
    values.update(nested)
    for name, value in values.items():
        if isinstance(value, list):
            values[name] = tuple(value)  # every sequence field of our value types is a tuple
    try:
        return cls(**values)
    except TypeError as error:
        raise WireFormatError(f"{cls.__name__}: {error}") from None


def _items(data: object, key: str) -> list[Any]:
    value = data.get(key, []) if isinstance(data, dict) else None
    if not isinstance(value, list):
        raise WireFormatError(f"{key}: expected a list")
    return value


E = TypeVar("E", bound=StrEnum)


def _enum(kind: type[E], data: object, key: str = "state") -> dict[str, E]:
    """The named field of a value as `kind`; a name this version does not know is an error
    (a console must not show, or act on, a state it cannot tell apart)."""
    raw = data.get(key) if isinstance(data, dict) else None
    try:
        return {key: kind(str(raw))}
    except ValueError:
        raise WireFormatError(f"{key}: unknown {kind.__name__} {raw!r}") from None


def _drain(data: object) -> DrainProgress:
    return _build(DrainProgress, data, **_enum(DrainPhase, data, "phase"))


def decode_snapshot(data: object) -> Snapshot:
    if not isinstance(data, dict):
        raise WireFormatError("snapshot: expected an object")
    drain = data.get("drain")
    previous_drain = data.get("previous_drain")
    loop_guard = data.get("loop_guard")
    previous_run = data.get("previous_run")
    counts = data.get("counts", {})
    if not isinstance(counts, dict):
        raise WireFormatError("counts: expected an object")
    return _build(
        Snapshot,
        data,
        **_enum(GatewayState, data),
        sessions=tuple(
            _build(SessionView, s, **_enum(SessionActivity, s)) for s in _items(data, "sessions")
        ),
        candidates=tuple(
            _build(CandidateView, c, **_enum(RecoveryState, c)) for c in _items(data, "candidates")
        ),
        notifiers=tuple(_build(NotifierView, n) for n in _items(data, "notifiers")),
        processes=tuple(
            _build(ProcessView, p, **_enum(ProcessState, p)) for p in _items(data, "processes")
        ),
        nodes=tuple(_build(NodeView, n, **_enum(NodeStatus, n)) for n in _items(data, "nodes")),
        drain=None if drain is None else _drain(drain),
        previous_drain=None if previous_drain is None else _drain(previous_drain),
        loop_guard=None if loop_guard is None else _build(LoopGuardView, loop_guard),
        previous_run=None if previous_run is None else _build(PreviousRun, previous_run),
        counts=_build(
            SnapshotCounts,
            counts,
            by_verdict={str(k): int(v) for k, v in dict(counts.get("by_verdict") or {}).items()},
        ),
    )


def decode_message(data: object) -> Message:
    calls = tuple(_build(ToolCall, c) for c in _items(data, "tool_calls"))
    return _build(Message, data, tool_calls=calls)


def decode_log_entry(data: object) -> LogEntry:
    return _build(LogEntry, data)


def decode_audit(data: object) -> AuditEntry:
    return _build(AuditEntry, data)


def decode_result(data: object) -> ActionResult:
    result = _build(ActionResult, data)
    if not isinstance(result.ok, bool) or not isinstance(result.message, str):
        raise WireFormatError("action result: ok must be a boolean and message a string")
    return result
