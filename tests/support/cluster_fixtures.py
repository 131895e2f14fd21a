"""Fixtures for tests of several gateways on one PostgreSQL (loaded by tests/conftest.py)."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator

import psutil
import pytest

from tests.support.cluster_nodes import Node
from tests.support.harness import use_store
from tests.support.postgres_server import PostgresServer


@pytest.fixture
def dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A database of the test's own, which the harness's gateways use too (as in a
    both_backends module), so that two in-process gateways share it as two nodes would."""
    database = postgres_server.new_database()
    use_store(database)
    try:
        yield database
    finally:
        use_store(None)


@pytest.fixture
async def nodes() -> AsyncIterator[list[Node]]:
    """The real `switchboard run` nodes a test starts (start_node appends them): any still
    running at the end is killed."""
    started: list[Node] = []
    yield started
    for node in started:
        if node.process.returncode is None:
            node.process.kill()
            await node.process.wait()


@pytest.fixture
def live_process() -> Iterator[psutil.Process]:
    """A real process on this machine, whose PID a job of another host happens to share."""
    child = subprocess.Popen(["sleep", "120"])
    try:
        yield psutil.Process(child.pid)
    finally:
        child.kill()
        child.wait()
