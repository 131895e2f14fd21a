"""Running the store's tests on both backends through one parametrized fixture.

A test module marked `pytest.mark.both_backends` runs each of its tests that takes the
`backend` fixture (or one built on it: `store`, `store_opener`) once on SQLite and once on a
real PostgreSQL server the session starts (tests/support/postgres_server.py). Tests of
SQLite's own file handling take `db_path` directly and run once.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from enum import StrEnum

from gateway_core.clock import Clock
from gateway_core.store import Store


class Backend(StrEnum):
    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


StoreOpener = Callable[[Clock], Awaitable[Store]]
"""Opens the test's store (the same file or database every time: a reopen is a reboot)."""

# .ci/run sets this once it has installed PostgreSQL: in CI a missing server is a failure,
# not a skip.
REQUIRED_ENV = "SWITCHBOARD_TEST_POSTGRES"
NOT_INSTALLED = (
    "PostgreSQL is not installed here (no initdb and pg_ctl on PATH or under"
    " /usr/lib/postgresql/*/bin): the PostgreSQL variants of the store tests are skipped"
    " (.ci/run installs it)"
)


def postgres_required() -> bool:
    return os.environ.get(REQUIRED_ENV) == "required"
