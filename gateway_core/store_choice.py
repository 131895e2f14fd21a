"""Which store a run opens: the configured backend, and its DSN from the environment by name.

The DSN may hold a password, so it lives only in the environment (`store.dsn_env` names the
variable) and in memory: `switchboard config` shows the variable's name, errors name the
server without the password (store/postgres_connect.py), and the log redacts both the DSN
and its password (`dsn_secrets`).
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway_core.clock import Clock
from gateway_core.config import Config, ConfigError, StoreBackend
from gateway_core.store import DATABASE_NAME, Store


def store_dsn(config: Config, env: Mapping[str, str]) -> str | None:
    """The PostgreSQL DSN (None on SQLite), or ConfigError naming the variable."""
    if config.store.backend is not StoreBackend.POSTGRESQL:
        return None
    name = config.store.dsn_env
    dsn = env.get(name, "").strip()
    if not dsn:
        raise ConfigError(
            f"environment {name} (store.dsn_env): not set; with store.backend = postgresql it"
            " must hold the PostgreSQL DSN (e.g. host=db.internal dbname=switchboard user=sb)"
        )
    return dsn


def dsn_secrets(dsn: str | None) -> list[str]:
    """What the log must never print: the DSN itself and the password in it."""
    if not dsn:
        return []
    return [dsn, *Store.dsn_passwords(dsn)]


async def open_configured_store(config: Config, clock: Clock, dsn: str | None) -> Store:
    if config.store.backend is StoreBackend.POSTGRESQL:
        if dsn is None:
            raise ConfigError("store.backend = postgresql, but no DSN was given to the gateway")
        return await Store.open_postgresql(dsn, clock=clock)
    return await Store.open(
        config.gateway.state_dir / DATABASE_NAME,
        synchronous=config.store.synchronous,
        busy_timeout=config.store.busy_timeout,
        clock=clock,
        write_process=config.store.write_process,
    )
