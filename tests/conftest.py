from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway_core.clock import ManualClock
from gateway_core.store import Store
from tests.support.harness import stop_all

pytest_plugins = ["tests.support.console_fixtures"]


@pytest.fixture(autouse=True)
async def _stop_started_gateways() -> AsyncIterator[None]:
    yield
    await stop_all()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "switchboard.db"


@pytest.fixture
async def store(db_path: Path, clock: ManualClock) -> AsyncIterator[Store]:
    opened = await Store.open(db_path, clock=clock)
    try:
        yield opened
    finally:
        await opened.close()
