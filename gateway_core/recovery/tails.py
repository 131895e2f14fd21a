"""Reading each candidate's transcript back to its user's request, and no further.

The decision on a transcript depends only on its rows from the user's request (the newest
user row that is not our recovery note, `evidence.request_index`) to the end. So the scan
reads, in one query for all candidates, each transcript from the newest row the store's
query takes for the request (`Transcript.from_request`) and confirms it here on the decoded
rows. Where it cannot be confirmed (no request in those rows: the transcript has none, or a
row the query took for one is not, by the decoder's reading), that session is read again the
old way: a short tail, then wider ones (one query for all of them per round) until the rows
reach a request or the transcript's start. Either way the rows handed to `decide()` give the
decision the whole transcript would give; how many rows the fallback reads first
(`RecoveryPolicy.tail_rows`) changes only its cost, never the decision.
"""

from __future__ import annotations

from collections.abc import Collection

from gateway_core.model import Message
from gateway_core.recovery.evidence import request_index
from gateway_core.store.transcript import Transcript

# Each re-read asks for this many times more rows than the one before.
WIDEN_FACTOR = 16


async def request_tails(
    transcript: Transcript, session_ids: Collection[int], first_rows: int
) -> dict[int, list[Message]]:
    """Each session's rows from its user's request to the end (its whole transcript when it
    has no request), oldest first."""
    found: dict[int, list[Message]] = {}
    unconfirmed: list[int] = []
    for session_id, tail in (await transcript.from_request(session_ids)).items():
        start = request_index(tail)
        if start == 0:
            found[session_id] = tail  # the usual case: the query started at the request
        elif start is not None:
            found[session_id] = tail[start:]
        elif not tail:
            found[session_id] = []
        else:
            unconfirmed.append(session_id)
    if unconfirmed:
        found.update(await _widening_tails(transcript, unconfirmed, first_rows))
    return found


async def _widening_tails(
    transcript: Transcript, session_ids: list[int], first_rows: int
) -> dict[int, list[Message]]:
    found: dict[int, list[Message]] = {}
    wanted = session_ids
    limit = max(first_rows, 1)
    while wanted:
        short = []
        for session_id, tail in (await transcript.tails(wanted, limit)).items():
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
