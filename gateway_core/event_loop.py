"""The event loop a headless gateway runs on.

`switchboard run` runs on uvloop (libuv under asyncio's API) where it is installed: the loop's
own bookkeeping (scheduling callbacks, waking tasks, resolving futures) is a large share of
what each message costs on the event-loop thread, and uvloop does it in compiled code. Measured
with bench/intake.py's workload under an instruction counter: about 7% fewer instructions per
message for the whole process, nothing else changed (docs/architecture.md, 4.1 "The hot path").

Only the headless command uses it. The console runs the gateway inside Textual's own loop, and
the tests run on asyncio's default loop, except those that start `switchboard run` as a real
process (the crash and restart tests), which run it on this one.

An operator can fall back to asyncio's loop with SWITCHBOARD_EVENT_LOOP=asyncio (to rule the
loop out when chasing a problem); any other value is refused with a clear error.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from gateway_core.config import ConfigError

T = TypeVar("T")

ENV_VAR = "SWITCHBOARD_EVENT_LOOP"


class LoopKind(enum.StrEnum):
    UVLOOP = "uvloop"
    ASYNCIO = "asyncio"


class EventLoopChoiceError(ConfigError):
    """SWITCHBOARD_EVENT_LOOP names no loop we know (the CLI reports it as a config error)."""


def chosen_loop(environ: Mapping[str, str]) -> LoopKind:
    """The loop the environment asks for: uvloop unless SWITCHBOARD_EVENT_LOOP says asyncio,
    and asyncio's where uvloop is not installed (it has no Windows build)."""
    text = environ.get(ENV_VAR, "").strip().lower()
    if text and text not in LoopKind.__members__.values():
        allowed = ", ".join(kind.value for kind in LoopKind)
        raise EventLoopChoiceError(f"{ENV_VAR}={text!r}: expected one of {allowed}")
    if text == LoopKind.ASYNCIO:
        return LoopKind.ASYNCIO
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return LoopKind.ASYNCIO
    return LoopKind.UVLOOP


def loop_factory(kind: LoopKind) -> Callable[[], asyncio.AbstractEventLoop]:
    if kind is LoopKind.UVLOOP:
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def running_loop_kind() -> LoopKind:
    """Which loop this coroutine runs on (the headless gateway's ready line says so)."""
    module = type(asyncio.get_running_loop()).__module__
    return LoopKind.UVLOOP if module.partition(".")[0] == "uvloop" else LoopKind.ASYNCIO


def run_server(main: Coroutine[Any, Any, T], environ: Mapping[str, str]) -> T:
    """asyncio.run(main) on the loop `chosen_loop` picks."""
    try:
        factory = loop_factory(chosen_loop(environ))
    except BaseException:
        main.close()  # never started: no "coroutine was never awaited" on the way out
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
