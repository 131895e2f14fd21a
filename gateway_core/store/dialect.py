"""The store's SQL, as PostgreSQL wants it.

The table modules hold one text per statement, written for SQLite (the embedded default, so
its hot path runs its SQL untouched). Where the two dialects differ only in spelling, the
PostgreSQL backend translates the text here, once per distinct statement (cached):

- `?` placeholders become `%s` (and a literal `%` becomes `%%`); quoted literals are left alone;
- `INDEXED BY name` (a SQLite planner hint) is dropped: PostgreSQL's planner picks the index;
- `INSERT OR IGNORE INTO ...` becomes `INSERT INTO ... ON CONFLICT DO NOTHING`;
- the two-argument scalar `MAX(a, b)` becomes `GREATEST(a, b)`;
- `json_extract(column, '$.field')` becomes `(column::json ->> 'field')`;
- `LIKE` becomes `ILIKE`: SQLite's LIKE ignores ASCII case, PostgreSQL's does not;
- a set of ids bound as one JSON array, `SELECT value FROM json_each(?)` (id_sets.py), becomes
  `SELECT value::bigint FROM json_array_elements_text(?::json)`.

What cannot be spelled the same way is written portably in the table module instead (an
upsert rather than `INSERT OR REPLACE`, a qualified column in `DO UPDATE SET`). A statement
this does not cover fails on PostgreSQL loudly, and the store tests run on both backends.
"""

from __future__ import annotations

import re
from functools import lru_cache

_INDEXED_BY = re.compile(r"\s+INDEXED\s+BY\s+\w+", re.IGNORECASE)
_INSERT_OR_IGNORE = re.compile(r"\bINSERT\s+OR\s+IGNORE\s+INTO\b", re.IGNORECASE)
_RETURNING = re.compile(r"\s+RETURNING\b", re.IGNORECASE)
_SCALAR_MAX = re.compile(r"\bMAX\(\s*([\w.]+)\s*,\s*([\w.]+)\s*\)", re.IGNORECASE)
_JSON_EXTRACT = re.compile(r"\bjson_extract\(\s*([\w.]+)\s*,\s*'\$\.(\w+)'\s*\)", re.IGNORECASE)
_LIKE = re.compile(r"\bLIKE\b", re.IGNORECASE)
_JSON_EACH = re.compile(r"\bSELECT\s+value\s+FROM\s+json_each\(\s*\?\s*\)", re.IGNORECASE)


@lru_cache(maxsize=1024)
def postgres_sql(sql: str) -> str:
    """The PostgreSQL spelling of one of the store's statements."""
    text = _INDEXED_BY.sub("", sql)
    if _INSERT_OR_IGNORE.search(text):
        text = _INSERT_OR_IGNORE.sub("INSERT INTO", text)
        returning = _RETURNING.search(text)
        if returning is None:
            text = text.rstrip().rstrip(";") + " ON CONFLICT DO NOTHING"
        else:
            at = returning.start()
            text = f"{text[:at]} ON CONFLICT DO NOTHING{text[at:]}"
    text = _SCALAR_MAX.sub(r"GREATEST(\1, \2)", text)
    text = _JSON_EXTRACT.sub(r"(\1::json ->> '\2')", text)
    text = _LIKE.sub("ILIKE", text)
    text = _JSON_EACH.sub("SELECT value::bigint FROM json_array_elements_text(?::json)", text)
    return _placeholders(text)


def _placeholders(sql: str) -> str:
    """`?` to `%s` and `%` to `%%`, outside quoted literals and identifiers."""
    out: list[str] = []
    quote: str | None = None
    for char in sql:
        if quote is not None:
            if char == quote:
                quote = None
            out.append("%%" if char == "%" else char)
        elif char in "'\"":
            quote = char
            out.append(char)
        elif char == "?":
            out.append("%s")
        elif char == "%":
            out.append("%%")
        else:
            out.append(char)
    return "".join(out)
