"""What the inbox notifications said since a node's pickup last looked.

The transaction that commits inbox items names them in its notification (their ids, comma
separated), so the pickup reads just those, and none at all when they are items this node
queued itself. A notification without names (a batch too big for one payload, or one this
version cannot read) asks for a look at every open item, as the periodic poll does.
"""

from __future__ import annotations

import asyncio

# PostgreSQL refuses a NOTIFY payload of 8,000 bytes or more: a batch naming more than this
# many characters' worth of ids says "look at everything" instead.
PAYLOAD_LIMIT = 7000


def payload_for(inbox_ids: list[int]) -> str:
    """The notification payload naming these inbox items ("" when too many to name)."""
    text = ",".join(map(str, inbox_ids))
    return "" if len(text) > PAYLOAD_LIMIT else text


class InboxWakeups:
    def __init__(self) -> None:
        self.event = asyncio.Event()
        self._named: set[int] = set()
        self._everything = False

    def note(self, payload: str) -> None:
        """A notification arrived (on the event loop)."""
        try:
            ids = {int(part) for part in payload.split(",")} if payload else None
        except ValueError:
            ids = None
        if ids is None:
            self._everything = True
        else:
            self._named |= ids
        self.event.set()

    def take(self) -> set[int] | None:
        """The items named since the last take, or None for "look at every open item"."""
        named, everything = self._named, self._everything
        self._named, self._everything = set(), False
        self.event.clear()
        return None if everything else named
