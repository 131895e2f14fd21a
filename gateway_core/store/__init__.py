"""Durable state in one SQLite file or one PostgreSQL database. See store.py for the entry
point."""

from gateway_core.store.errors import (
    AccessDenied,
    DatabaseLocked,
    LeaseHeld,
    LeaseLost,
    NotADatabase,
    SchemaTooNew,
    ServerUnreachable,
    StoreClosed,
    StoreError,
)
from gateway_core.store.store import DATABASE_NAME, Store
from gateway_core.store.transaction import Transaction

__all__ = [
    "DATABASE_NAME",
    "AccessDenied",
    "DatabaseLocked",
    "LeaseHeld",
    "LeaseLost",
    "NotADatabase",
    "SchemaTooNew",
    "ServerUnreachable",
    "Store",
    "StoreClosed",
    "StoreError",
    "Transaction",
]
