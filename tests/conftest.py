from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path

import pytest

from gateway_core.clock import Clock, ManualClock
from gateway_core.store import Store
from tests.support.backends import NOT_INSTALLED, Backend, StoreOpener, postgres_required
from tests.support.harness import stop_all, store_dsn, use_store
from tests.support.postgres_server import PostgresServer, start_server

pytest_plugins = ["tests.support.console_fixtures", "tests.support.cluster_fixtures"]


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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_backends: run the module's store tests on SQLite and on PostgreSQL"
    )
    config.addinivalue_line(
        "markers", "sqlite_only: in a both_backends module, a test of what only SQLite allows"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "both_backends"
    ):
        only_sqlite = metafunc.definition.get_closest_marker("sqlite_only") is not None
        backends = [Backend.SQLITE] if only_sqlite else list(Backend)
        metafunc.parametrize("backend", backends, indirect=True, ids=str)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real server for the whole session, started on first use."""
    server = start_server()
    if server is None:
        if postgres_required():
            pytest.fail(NOT_INSTALLED)
        pytest.skip(NOT_INSTALLED)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """SQLite, unless the module is marked both_backends: then each test runs on both. On
    PostgreSQL the test gets a database of its own, which the harness's gateways use too."""
    chosen = Backend(getattr(request, "param", Backend.SQLITE))
    if chosen is not Backend.POSTGRESQL:
        yield chosen
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    use_store(server.new_database())
    try:
        yield chosen
    finally:
        use_store(None)


@pytest.fixture
def store_opener(backend: Backend, db_path: Path) -> StoreOpener:
    dsn = store_dsn()
    if backend is Backend.POSTGRESQL and dsn is not None:
        return lambda clock: Store.open_postgresql(dsn, clock=clock)

    def open_file(clock: Clock) -> Awaitable[Store]:
        return Store.open(db_path, clock=clock)

    return open_file


@pytest.fixture
async def store(store_opener: StoreOpener, clock: ManualClock) -> AsyncIterator[Store]:
    opened = await store_opener(clock)
    try:
        yield opened
    finally:
        await opened.close()
