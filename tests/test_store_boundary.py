"""The store is the only code that speaks SQL: no module of gateway_core outside
gateway_core/store/ imports a database driver or holds an SQL statement in a string.

(A second store backend is planned; this boundary is what makes it possible.)
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "gateway_core"
STORE = CORE / "store"
DRIVERS = re.compile(r"^\s*(import|from)\s+(sqlite3|aiosqlite|psycopg|asyncpg)\b", re.M)
# Statements as this project writes them: upper-case keywords, the way SQL reads in the store.
STATEMENT = re.compile(
    r"^\W*(SELECT\s.+\sFROM\s|INSERT\s+(OR\s+\w+\s+)?INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s"
    r"|CREATE\s+(TABLE|INDEX)\s|ALTER\s+TABLE\s|DROP\s|PRAGMA\s|BEGIN\b|WITH\s+\w+)",
    re.S,
)


def outside_the_store() -> list[Path]:
    return sorted(p for p in CORE.rglob("*.py") if STORE not in p.parents)


def sql_strings(source: str) -> list[str]:
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.STRING and STATEMENT.match(token.string.lstrip("rbuRBUfF")):
            found.append(token.string)
    return found


def test_no_core_module_outside_the_store_imports_a_database_driver() -> None:
    offenders = [str(p) for p in outside_the_store() if DRIVERS.search(p.read_text())]
    assert offenders == []


def test_no_core_module_outside_the_store_holds_an_sql_statement() -> None:
    offenders = {str(p): sql_strings(p.read_text()) for p in outside_the_store()}
    assert {path: strings for path, strings in offenders.items() if strings} == {}


def test_the_check_finds_what_it_looks_for() -> None:
    # The check itself must be able to fail.
    assert sql_strings('db.execute("SELECT generation FROM sessions WHERE id = ?")')
    assert sql_strings("q = f'UPDATE recovery SET state = {x}'")
    assert not sql_strings('log.info("select a session to see its transcript")')
    assert DRIVERS.search("import sqlite3\n")
