"""Durable state in one SQLite file. See store.py for the entry point."""

from gateway_core.store.errors import (
    DatabaseLocked,
    NotADatabase,
    SchemaTooNew,
    StoreClosed,
    StoreError,
)
from gateway_core.store.store import DATABASE_NAME, Store
from gateway_core.store.transaction import Transaction

__all__ = [
    "DATABASE_NAME",
    "DatabaseLocked",
    "NotADatabase",
    "SchemaTooNew",
    "Store",
    "StoreClosed",
    "StoreError",
    "Transaction",
]
