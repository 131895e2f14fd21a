"""Reading each candidate's transcript back to its user's request, and no further.

The decision on a transcript depends only on its rows from the user's request (the newest
user row that is not our recovery note, `evidence.request_index`) to the end. So the scan
reads a short tail of every candidate in one query, and reads further back (a wider tail, in
one query for all of them) only for the few whose short tail does not reach the request. A
session whose transcript has no request at all is read whole. Either way the rows handed to
`decide()` give the decision the whole transcript would give; how many rows are read first
(`RecoveryPolicy.tail_rows`) changes only the cost, never the decision.
"""

from __future__ import annotations

from collections.abc import Collection

from gateway_core.model import Message
from gateway_core.recovery.evidence import request_index
from gateway_core.store import Store

# Each re-read asks for this many times more rows than the one before.
WIDEN_FACTOR = 16


async def request_tails(
    store: Store, session_ids: Collection[int], first_rows: int
) -> dict[int, list[Message]]:
    """Each session's rows from its user's request to the end (its whole transcript when it
    has no request), oldest first."""
    found: dict[int, list[Message]] = {}
    wanted = list(session_ids)
    limit = max(first_rows, 1)
    while wanted:
        short = []
        for session_id, tail in (await store.transcript.tails(wanted, limit)).items():
            start = request_index(tail)
            if start is not None:
                found[session_id] = tail[start:]
            elif len(tail) < limit:  # the whole transcript was read: there is no request
                found[session_id] = tail[:]
            else:
                short.append(session_id)
        wanted = short
        limit *= WIDEN_FACTOR
    return found
