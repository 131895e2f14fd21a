"""Nodes and session leases: at most one node at a time owns a session, and proves it.

A node takes a session's lease in the start transaction of a turn (`acquire_row`): a lease
that is free (never taken, released, or expired) becomes this node's with a new epoch; one
this node holds already keeps its epoch (and is renewed); one another node holds unexpired is
refused (`LeaseHeld`). The heartbeat renews every lease of the node that has not lapsed; a
drain releases them at once, so the next node need not wait out the TTL.

Every later write of the turn (its transcript rows, its end with the answer and outbox row,
its interruption) first runs `fence_row` in the same transaction: the lease must still be
this node's, at this epoch. The check is an UPDATE, so on PostgreSQL it holds the lease row's
lock until the commit: a node taking the lease over waits for that commit, and from then on
every write of the old owner is refused (`LeaseLost`). The epoch, not the clock, is the
fence: a paused node whose lease expired but was not taken loses nothing.

Delivery claims a reply with `delivery_fence_row`: refused only when another node owns the
session (a reply queued outside any turn, such as a boot's notice, has no lease to check).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway_core.clock import Clock
from gateway_core.model import NodeRecord, NodeState, SessionLease
from gateway_core.store.errors import LeaseHeld, LeaseLost
from gateway_core.store.inbox_wakeups import payload_for
from gateway_core.store.transaction import RowReader, Transaction, TransactionQueue

_LEASE_COLUMNS = "session_id, owner, epoch, expires_at"
INBOX_CHANNEL = "switchboard_inbox"  # NOTIFY: new inbox items committed
_NODE_COLUMNS = "id, host, pid, state, started_at, heartbeat_at"


def _lease(row: tuple[Any, ...]) -> SessionLease:
    return SessionLease(int(row[0]), row[1], int(row[2]), float(row[3]))


def _node(row: tuple[Any, ...]) -> NodeRecord:
    try:
        state = NodeState(str(row[3]))
    except ValueError:  # a state this version does not know: not counted as alive
        state = NodeState.STOPPED
    return NodeRecord(str(row[0]), str(row[1]), int(row[2]), state, float(row[4]), float(row[5]))


def _take_sql(table: str, key: str) -> str:
    return (
        f"INSERT INTO {table} ({key}, owner, epoch, expires_at) VALUES (?, ?, 1, ?)"
        f" ON CONFLICT ({key}) DO UPDATE SET"
        f" epoch = CASE WHEN {table}.owner = excluded.owner THEN {table}.epoch"
        f" ELSE {table}.epoch + 1 END,"
        " owner = excluded.owner, expires_at = excluded.expires_at"
        f" WHERE {table}.owner = excluded.owner OR {table}.owner IS NULL"
        f" OR {table}.expires_at < ?"
        " RETURNING epoch"
    )


# The one way a lease is taken, for a session's and for an intake's (built once: a turn's
# start runs it).
_TAKE_SESSION_LEASE = _take_sql("session_leases", "session_id")
_TAKE_INTAKE_LEASE = _take_sql("intake_leases", "name")


def _take_row(
    db: Transaction, take_sql: str, key: int | str, node_id: str, now: float, ttl: float
) -> int | None:
    """A lease (a session's or an intake's) that is free, lapsed or already this node's
    becomes this node's until now + ttl, its epoch up by one when it changes hands. Returns
    the epoch, or None when another node holds it unexpired."""
    row = db.execute(take_sql, (key, node_id, now + ttl, now)).fetchone()
    return None if row is None else int(row[0])


def acquire_row(db: Transaction, session_id: int, node_id: str, now: float, ttl: float) -> int:
    """This node's epoch for the session, inside a turn's start transaction; LeaseHeld if
    another node holds it unexpired."""
    epoch = _take_row(db, _TAKE_SESSION_LEASE, session_id, node_id, now, ttl)
    if epoch is None:
        holder = db.execute(
            "SELECT owner FROM session_leases WHERE session_id = ?", (session_id,)
        ).fetchone()
        owner = None if holder is None else holder[0]
        raise LeaseHeld(f"session {session_id} is owned by node {owner}")
    return epoch


def fence_row(db: Transaction, session_id: int, node_id: str, epoch: int) -> None:
    """Refuse the transaction (LeaseLost) unless this node still holds the lease at epoch."""
    cursor = db.execute(
        "UPDATE session_leases SET epoch = epoch WHERE session_id = ? AND owner = ? AND epoch = ?",
        (session_id, node_id, epoch),
    )
    if cursor.rowcount != 1:
        raise LeaseLost(
            f"session {session_id}: node {node_id} lost its lease (epoch {epoch}); write refused"
        )


# Sessions a dead (or drained) node may have left something to recover in: a turn marked
# running, a recovery candidate, a reply not yet sent or a send in flight, a "still working"
# message showing, a background job still running (its owner re-adopts it, or finds it gone
# and settles it), a job's completion whose notice turn had not run yet.
_LEFT_OVER_SQL = (
    "SELECT id FROM sessions WHERE active_turn IS NOT NULL"
    " UNION SELECT session_id FROM recovery WHERE state != 'none'"
    " UNION SELECT session_id FROM outbox WHERE status = 'pending'"
    " UNION SELECT session_id FROM outbox WHERE status = 'sending'"
    " UNION SELECT session_id FROM working_notices"
    " UNION SELECT session_id FROM processes WHERE state = 'running'"
    " AND session_id IS NOT NULL"
    " UNION SELECT session_id FROM processes WHERE state != 'running'"
    " AND notify_on_complete != 0 AND consumed = 0 AND session_id IS NOT NULL"
)


# Each left-over session whose lease is free (never taken, released), lapsed, or (at boot,
# `include_own`) already this node's, taken in the same statement: one statement however
# many sessions there are. The sessions another node holds are left out before the upsert,
# not by its WHERE: PostgreSQL locks every row an ON CONFLICT DO UPDATE meets, updated or
# not, and a live node's fences would then wait for this sweep's commit (or deadlock with
# its own sweep). The WHERE still guards a lease taken meanwhile. In session order, as two
# nodes sweeping at once take their row locks in the same order.
_CLAIM_LEFT_OVER_SQL = (
    "INSERT INTO session_leases (session_id, owner, epoch, expires_at)"
    f" SELECT left_over.id, ?, 1, ? FROM ({_LEFT_OVER_SQL}) AS left_over"
    " WHERE NOT EXISTS (SELECT 1 FROM session_leases AS held"
    " WHERE held.session_id = left_over.id AND held.owner IS NOT NULL"
    " AND ((held.owner != ? AND held.expires_at >= ?) OR (held.owner = ? AND ? = 0)))"
    " ORDER BY left_over.id"
    " ON CONFLICT (session_id) DO UPDATE SET"
    " epoch = CASE WHEN session_leases.owner = excluded.owner THEN session_leases.epoch"
    " ELSE session_leases.epoch + 1 END,"
    " owner = excluded.owner, expires_at = excluded.expires_at"
    " WHERE session_leases.owner IS NULL"
    " OR (session_leases.owner = excluded.owner AND ? = 1)"
    " OR (session_leases.owner != excluded.owner AND session_leases.expires_at < ?)"
    " RETURNING session_id"
)


def claim_left_over_row(
    db: Transaction, node_id: str, now: float, ttl: float, *, include_own: bool
) -> list[int]:
    """Leases of the sessions something may be left over in, whose lease is free or lapsed
    (at boot also those already this node's: a restart under the same node_id). Returns the
    sessions now this node's to recover, each under a new epoch (or its own)."""
    own = int(include_own)
    parameters = (node_id, now + ttl, node_id, now, node_id, own, own, now)
    rows = db.execute(_CLAIM_LEFT_OVER_SQL, parameters).fetchall()
    return sorted(int(row[0]) for row in rows)


def inbox_open_row(db: Transaction, inbox_id: int) -> bool:
    """Whether an inbox item is still to be turned into a turn (on a node, the start
    transaction checks it: two nodes may both have queued it, one turn is started)."""
    row = db.execute("SELECT status FROM inbox WHERE id = ?", (inbox_id,)).fetchone()
    return row is not None and row[0] == "new"


def notify_nodes_row(db: Transaction, inbox_ids: list[int]) -> None:
    """Wake the nodes' inbox pickup when this transaction commits, naming the items it
    committed (store/inbox_wakeups.py). PostgreSQL only: nodes exist only there."""
    db.execute(f"SELECT pg_notify('{INBOX_CHANNEL}', ?)", (payload_for(inbox_ids),))


# A delivery's statements carry this condition (parameters: session id, node id) so that the
# fence costs no statement of its own: true unless another node owns the session.
NOT_OWNED_ELSEWHERE = (
    "NOT EXISTS (SELECT 1 FROM session_leases WHERE session_leases.session_id = ?"
    " AND session_leases.owner IS NOT NULL AND session_leases.owner != ?)"
)


def delivery_fence_row(db: Transaction, session_id: int, node_id: str) -> None:
    """Refuse a delivery claim (LeaseLost) when another node owns the session."""
    row = db.execute(
        "SELECT owner FROM session_leases WHERE session_id = ? AND owner IS NOT NULL"
        " AND owner != ?",
        (session_id, node_id),
    ).fetchone()
    if row is not None:
        raise LeaseLost(f"session {session_id} is owned by node {row[0]}; not delivering")


class Leases:
    def __init__(self, writer: TransactionQueue, reader: RowReader, clock: Clock) -> None:
        self._writer, self._reader, self._clock = writer, reader, clock

    async def heartbeat(
        self, node_id: str, host: str, pid: int, state: NodeState, ttl: float
    ) -> int:
        """The node's row brought up to date and every lease it holds renewed; returns how
        many it holds."""
        now = self._clock.now()

        def txn(db: Transaction) -> int:
            db.execute(
                f"INSERT INTO nodes ({_NODE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid,"
                " state = excluded.state, heartbeat_at = excluded.heartbeat_at",
                (node_id, host, pid, str(state), now, now),
            )
            # Only leases that have not lapsed: a node paused past its TTL does not take back
            # what others may already have been offered.
            db.execute(
                "UPDATE intake_leases SET expires_at = ? WHERE owner = ? AND expires_at >= ?",
                (now + ttl, node_id, now),
            )
            return db.execute(
                "UPDATE session_leases SET expires_at = ? WHERE owner = ? AND expires_at >= ?",
                (now + ttl, node_id, now),
            ).rowcount

        return await self._writer.submit(txn)

    async def claim_left_over(self, node_id: str, ttl: float, *, include_own: bool) -> list[int]:
        """See claim_left_over_row: the sessions this node now recovers."""
        now = self._clock.now()
        return await self._writer.submit(
            lambda db: claim_left_over_row(db, node_id, now, ttl, include_own=include_own)
        )

    async def acquire(self, session_id: int, node_id: str, ttl: float) -> int:
        """The lease on its own (outside a turn); LeaseHeld if another node holds it."""
        now = self._clock.now()
        return await self._writer.submit(lambda db: acquire_row(db, session_id, node_id, now, ttl))

    async def release_all(self, node_id: str) -> int:
        """At a drain: every lease of this node freed at once, its intake leases too (the
        epochs stay, so the next owner's is new). Returns how many sessions were released."""

        def txn(db: Transaction) -> int:
            db.execute("UPDATE intake_leases SET owner = NULL WHERE owner = ?", (node_id,))
            return db.execute(
                "UPDATE session_leases SET owner = NULL WHERE owner = ?", (node_id,)
            ).rowcount

        return await self._writer.submit(txn)

    async def acquire_intake(self, name: str, node_id: str, ttl: float) -> bool:
        """Whether this node now holds the intake lease `name` (taken if free or lapsed,
        renewed if already its own)."""
        now = self._clock.now()

        def txn(db: Transaction) -> bool:
            return _take_row(db, _TAKE_INTAKE_LEASE, name, node_id, now, ttl) is not None

        return await self._writer.submit(txn)

    async def intake_holders(self) -> dict[str, str]:
        """{intake name: node} for the intake leases held and not lapsed."""
        rows = await self._reader.all(
            "SELECT name, owner FROM intake_leases WHERE owner IS NOT NULL AND expires_at >= ?",
            (self._clock.now(),),
        )
        return {str(name): str(owner) for name, owner in rows}

    async def sessions_owned(self) -> dict[str, int]:
        """{node: how many sessions it holds}, leases not lapsed."""
        rows = await self._reader.all(
            "SELECT owner, count(*) FROM session_leases WHERE owner IS NOT NULL"
            " AND expires_at >= ? GROUP BY owner",
            (self._clock.now(),),
        )
        return {str(owner): int(count) for owner, count in rows}

    async def free_for(self, node_id: str, session_ids: Iterable[int]) -> set[int]:
        """Which of the sessions this node may take: its own, released, lapsed, never leased."""
        wanted = list(session_ids)
        if not wanted:
            return set()
        marks = ",".join("?" * len(wanted))
        rows = await self._reader.all(
            f"SELECT session_id FROM session_leases WHERE session_id IN ({marks})"
            " AND owner IS NOT NULL AND owner != ? AND expires_at >= ?",
            (*wanted, node_id, self._clock.now()),
        )
        taken = {int(row[0]) for row in rows}
        return {session_id for session_id in wanted if session_id not in taken}

    async def of_session(self, session_id: int) -> SessionLease | None:
        row = await self._reader.one(
            f"SELECT {_LEASE_COLUMNS} FROM session_leases WHERE session_id = ?", (session_id,)
        )
        return None if row is None else _lease(row)

    async def nodes(self) -> list[NodeRecord]:
        rows = await self._reader.all(f"SELECT {_NODE_COLUMNS} FROM nodes ORDER BY id")
        return [_node(row) for row in rows]
