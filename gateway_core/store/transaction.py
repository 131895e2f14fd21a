"""The handle a transaction body is given.

Code outside the store writes a transaction as a function of this handle and passes it on to
the store's row functions (`append_rows(txn, ...)`, `enqueue_row(txn, ...)`); it never runs
statements on it itself, so the store stays the only code that speaks SQL, and a second
backend needs only its own handle here. A body may be run twice (store/writer.py: when another
body of its batch raised), so it changes nothing outside the transaction as it runs.
"""

from __future__ import annotations

import sqlite3

Transaction = sqlite3.Connection
