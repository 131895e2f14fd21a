"""A set of ids as ONE bound parameter: a statement over any number of sessions is one
statement with one text (prepared and cached once on each backend), not one per id, nor one
text per count of ids.

    f"UPDATE turns SET ... WHERE session_id {IN_IDS}", (..., ids_param(ids))

SQLite reads the JSON array with `json_each`; the PostgreSQL spelling (dialect.py) is
`json_array_elements_text(...)` cast back to integers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

IN_IDS = "IN (SELECT value FROM json_each(?))"


def ids_param(ids: Iterable[int]) -> str:
    """The bound value for IN_IDS: the ids as a JSON array."""
    return json.dumps(sorted({int(i) for i in ids}))
