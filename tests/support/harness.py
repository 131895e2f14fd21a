"""Building a real gateway for tests: real store file, loopback adapter, scripted agent."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any, Protocol, TypeVar

from gateway_core.adapters.loopback import LoopbackAdapter
from gateway_core.agents.scripted import ScriptedAgent
from gateway_core.clock import Clock, ManualClock
from gateway_core.config import Config, load_config
from gateway_core.events import Event, Subscription
from gateway_core.gateway import Gateway
from gateway_core.store import DATABASE_NAME, Store

E = TypeVar("E", bound=Event)
R = TypeVar("R", bound="Stoppable")


# The PostgreSQL database of the running test, when it runs on that backend (set by the
# `backend` fixture, tests/conftest.py); None: the SQLite file in the state dir.
_store_dsn: str | None = None


def use_store(dsn: str | None) -> None:
    global _store_dsn
    _store_dsn = dsn


def store_dsn() -> str | None:
    return _store_dsn


async def open_store(state_dir: Path, clock: Clock) -> Store:
    """The store the test's gateways use, opened on its own (a reboot, or a look at rows)."""
    if _store_dsn is not None:
        return await Store.open_postgresql(_store_dsn, clock=clock)
    return await Store.open(state_dir / DATABASE_NAME, clock=clock)


def background_sleepers() -> int:
    """Sleeps a started gateway always has pending on its clock: on PostgreSQL, the node's
    heartbeat (gateway_core/node.py) and its inbox pickup's poll; on SQLite, none."""
    return 0 if _store_dsn is None else 2


async def wait_for_sleepers(clock: ManualClock, count: int) -> None:
    """clock.wait_for_sleepers(count), not counting the gateway's background sleeps."""
    await clock.wait_for_sleepers(count + background_sleepers())


def make_config(state_dir: Path, **sections: dict[str, Any]) -> Config:
    """A config file with state_dir set and the given [section] keys, loaded for real."""
    # Sampling is off unless a test asks: its timer would sit among a ManualClock's sleepers.
    tables: dict[str, dict[str, Any]] = {
        "gateway": {"state_dir": str(state_dir), "sample_interval": 0}
    }
    if _store_dsn is not None:
        tables["store"] = {"backend": "postgresql"}
    tables.setdefault("agent", {})["kind"] = "scripted"
    for name, values in sections.items():
        tables.setdefault(name, {}).update(values)
    lines = []
    for name, values in tables.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {_toml(value)}" for key, value in values.items())
    path = state_dir.parent / f"{state_dir.name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return load_config(path, env={})


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def make_gateway(config: Config, clock: Clock, adapter: LoopbackAdapter) -> Gateway:
    return Gateway(
        config, agent=ScriptedAgent(), adapters=[adapter], clock=clock, store_dsn=_store_dsn
    )


class Running:
    """A started gateway with its loopback adapter; stop() drains with no waiting."""

    def __init__(self, gateway: Gateway, adapter: LoopbackAdapter) -> None:
        self.gateway = gateway
        self.adapter = adapter

    async def stop(self) -> None:
        await stop_gateway(self.gateway)


async def stop_gateway(gateway: Gateway) -> None:
    """Stop with no drain wait. Under a ManualClock, time is pumped meanwhile: a test that
    failed half-way may have left a drain or a retry waiting on the clock."""
    if gateway.state.value == "stopped":
        return
    stopping = asyncio.ensure_future(gateway.stop(0))
    clock = gateway.clock
    async with asyncio.timeout(30):
        while not stopping.done():
            if isinstance(clock, ManualClock):
                clock.advance(1)
            await asyncio.wait({stopping}, timeout=0.01)
    await stopping


class Stoppable(Protocol):
    async def stop(self) -> None: ...


class Stops:
    """Any gateway, tracked for teardown."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def stop(self) -> None:
        await stop_gateway(self.gateway)


# Every gateway a test starts is stopped after the test, even when it failed half-way
# (tests/conftest.py calls stop_all): a gateway left running hangs the interpreter's exit.
_live: list[Stoppable] = []


def track(running: R) -> R:
    _live.append(running)
    return running


async def stop_all() -> None:
    while _live:
        await _live.pop().stop()


async def start_gateway(
    state_dir: Path,
    clock: Clock,
    adapter: LoopbackAdapter | None = None,
    **sections: dict[str, Any],
) -> Running:
    adapter = adapter or LoopbackAdapter()
    gateway = make_gateway(make_config(state_dir, **sections), clock, adapter)
    await gateway.start()
    return track(Running(gateway, adapter))


async def next_event(subscription: Subscription, kind: type[E], within: float = 10.0) -> E:
    """The next event of `kind` on the bus (others are skipped)."""
    async with asyncio.timeout(within):
        while True:
            event = await subscription.queue.get()
            if isinstance(event, kind):
                return event


def ready_until_signalled() -> asyncio.Event:
    """For gateway subprocesses in tests: SIGTERM/SIGINT set the returned event, and READY
    is printed (flushed) so the parent knows the gateway has started."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print("READY", flush=True)
    return stop
