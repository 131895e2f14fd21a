"""The database schema and its migrations, versioned by ``PRAGMA user_version``.

MIGRATIONS[i] is the SQL that takes a database from version i to i+1; the store runs it
in one transaction together with the version bump. A migration is only ever appended, never
edited: a released database may be at any earlier version. Times are REAL epoch seconds.
"""

from __future__ import annotations

_V1_CORE = """
        CREATE TABLE sessions (
            id          INTEGER PRIMARY KEY,
            key         TEXT NOT NULL UNIQUE,
            platform    TEXT NOT NULL,
            chat_id     TEXT NOT NULL,
            thread_id   TEXT,
            origin      TEXT,               -- JSON; NULL means nowhere to deliver
            generation  INTEGER NOT NULL DEFAULT 0,
            created_at  REAL NOT NULL,
            updated_at  REAL NOT NULL
        );

        -- The transcript. seq is contiguous per session, so a tail read is a short
        -- range scan of (session_id, seq) and never touches other sessions' rows.
        CREATE TABLE messages (
            id            INTEGER PRIMARY KEY,
            session_id    INTEGER NOT NULL REFERENCES sessions(id),
            seq           INTEGER NOT NULL,
            role          TEXT NOT NULL,
            kind          TEXT NOT NULL DEFAULT 'text',
            content       TEXT NOT NULL DEFAULT '',
            tool_calls    TEXT,             -- JSON list of {id, name, arguments}
            tool_call_id  TEXT,
            tool_name     TEXT,
            finish_reason TEXT,
            generation    INTEGER NOT NULL DEFAULT 0,
            created_at    REAL,
            UNIQUE (session_id, seq)
        );

        CREATE TABLE recovery (
            session_id      INTEGER PRIMARY KEY REFERENCES sessions(id),
            state           TEXT NOT NULL DEFAULT 'none',
            reason          TEXT,
            marked_at       REAL,
            last_verdict    TEXT,
            attempts        INTEGER NOT NULL DEFAULT 0,
            last_attempt_at REAL,
            updated_at      REAL
        );
        -- Only the few records that are candidates are indexed: the startup scan reads
        -- this index and nothing else.
        CREATE INDEX recovery_candidates ON recovery(state) WHERE state != 'none';

        CREATE TABLE inbox (
            id           INTEGER PRIMARY KEY,
            platform     TEXT NOT NULL,
            update_id    TEXT NOT NULL,
            session_key  TEXT,
            payload      TEXT NOT NULL,
            status       TEXT NOT NULL DEFAULT 'new',
            error        TEXT,
            received_at  REAL NOT NULL,
            processed_at REAL,
            UNIQUE (platform, update_id)
        );
        CREATE INDEX inbox_open ON inbox(id) WHERE status = 'new';

        CREATE TABLE outbox (
            id                  INTEGER PRIMARY KEY,
            session_id          INTEGER NOT NULL REFERENCES sessions(id),
            generation          INTEGER NOT NULL,
            kind                TEXT NOT NULL DEFAULT 'reply',
            content             TEXT NOT NULL,
            status              TEXT NOT NULL DEFAULT 'pending',
            attempts            INTEGER NOT NULL DEFAULT 0,
            last_error          TEXT,
            platform_message_id TEXT,
            created_at          REAL NOT NULL,
            sent_at             REAL
        );
        CREATE INDEX outbox_pending ON outbox(id) WHERE status = 'pending';

        CREATE TABLE runs (
            id         INTEGER PRIMARY KEY,
            started_at REAL NOT NULL,
            stopped_at REAL,
            clean      INTEGER,
            pid        INTEGER NOT NULL
        );
"""

# Version 2 added background-process records, the operator audit trail, the explanation
# shown next to a verdict, and the candidate count the loop guard reads.
_V2_PROCESSES_AUDIT_LOOP_GUARD = """
        ALTER TABLE recovery ADD COLUMN last_explanation TEXT;
        ALTER TABLE runs ADD COLUMN candidates INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX runs_with_candidates ON runs(started_at) WHERE candidates > 0;

        CREATE TABLE processes (
            id                 TEXT PRIMARY KEY,
            session_id         INTEGER REFERENCES sessions(id),
            generation         INTEGER NOT NULL DEFAULT 0,
            command            TEXT NOT NULL,
            cwd                TEXT,
            pid                INTEGER,
            pid_started_at     REAL,          -- psutil create_time: the PID-reuse guard
            notify_on_complete INTEGER NOT NULL DEFAULT 0,
            watch_patterns     TEXT NOT NULL DEFAULT '[]',
            log_path           TEXT,
            state              TEXT NOT NULL DEFAULT 'running',
            exit_code          INTEGER,
            end_reason         TEXT,
            consumed           INTEGER NOT NULL DEFAULT 0,
            started_at         REAL NOT NULL,
            ended_at           REAL
        );
        CREATE INDEX processes_live ON processes(state) WHERE state = 'running';

        CREATE TABLE audit (
            id      INTEGER PRIMARY KEY,
            at      REAL NOT NULL,
            actor   TEXT NOT NULL,
            action  TEXT NOT NULL,
            targets TEXT NOT NULL DEFAULT '[]',
            reason  TEXT,
            outcome TEXT NOT NULL,
            detail  TEXT
        );
"""

# Version 3 added the durable "a turn is running" marker. A turn sets it when it starts and
# clears it when it ends; one still set at boot means the previous run died mid-turn.
_V3_ACTIVE_TURN = """
        ALTER TABLE sessions ADD COLUMN active_turn INTEGER;
        ALTER TABLE sessions ADD COLUMN turn_started_at REAL;
        CREATE INDEX sessions_active_turn ON sessions(id) WHERE active_turn IS NOT NULL;
"""

# Version 4 added the evidence restart recovery decides from beyond the transcript: one row
# per turn saying how it ended (a resume that was killed is not one that ran and produced
# nothing), the tool call that started each job (so the call can be settled from the job's
# exit status), and what the user was told about an interrupted request (told once).
_V4_TURNS_TOOL_CALLS_TOLD = """
        CREATE TABLE turns (
            session_id INTEGER NOT NULL REFERENCES sessions(id),
            generation INTEGER NOT NULL,
            kind       TEXT NOT NULL,       -- message | resume | notice
            run_id     INTEGER,             -- the boot that ran it
            started_at REAL NOT NULL,
            ended_at   REAL,
            outcome    TEXT,                -- NULL while it runs (see TurnOutcome)
            PRIMARY KEY (session_id, generation)
        ) WITHOUT ROWID;
        CREATE INDEX turns_open ON turns(session_id) WHERE outcome IS NULL;

        ALTER TABLE processes ADD COLUMN tool_call_id TEXT;
        CREATE INDEX processes_by_tool_call ON processes(tool_call_id)
            WHERE tool_call_id IS NOT NULL;

        ALTER TABLE recovery ADD COLUMN told TEXT;
"""

# Version 5 delivers replies piece by piece: a reply longer than one platform message is split
# once, at its first claim, and each piece is confirmed (with its platform message id) before
# the next is sent, so a retry or a restart sends only what was not confirmed. And it records
# the "still working" message of each running turn, so a retry edits that one message and the
# next boot removes the message of a turn the crash killed.
_DELIVERY_PIECES_AND_WORKING_NOTICES = """
        CREATE TABLE outbox_pieces (
            outbox_id           INTEGER NOT NULL REFERENCES outbox(id),
            piece               INTEGER NOT NULL,   -- 0, 1, ... in sending order
            content             TEXT NOT NULL,
            status              TEXT NOT NULL DEFAULT 'pending',
            platform_message_id TEXT,
            sent_at             REAL,
            PRIMARY KEY (outbox_id, piece)
        ) WITHOUT ROWID;

        -- One row per running turn that showed (or began to show) a "still working" message;
        -- the row goes when the turn removed it, so every row found at boot is a dead turn's.
        CREATE TABLE working_notices (
            session_id  INTEGER NOT NULL REFERENCES sessions(id),
            generation  INTEGER NOT NULL,
            origin      TEXT NOT NULL,
            message_id  TEXT,                   -- NULL until the platform answered the send
            created_at  REAL NOT NULL,
            PRIMARY KEY (session_id, generation)
        ) WITHOUT ROWID;
"""

# Version 6 points answers at what they answer (reply anchors): each user message keeps its
# platform message id (with its inbox row and its transcript row); each turn, answer row and
# outbox row the id of the request it answers; each job the request of the turn that started
# it; and each session the id of its user's newest message, so a private chat's answer can
# tell whether it is still the immediate reply to it.
_REPLY_ANCHORS = """
        ALTER TABLE inbox ADD COLUMN message_id TEXT;
        ALTER TABLE messages ADD COLUMN platform_message_id TEXT;
        ALTER TABLE messages ADD COLUMN reply_to TEXT;
        ALTER TABLE turns ADD COLUMN reply_to TEXT;
        ALTER TABLE outbox ADD COLUMN reply_to TEXT;
        ALTER TABLE outbox ADD COLUMN direct INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE processes ADD COLUMN reply_to TEXT;
        ALTER TABLE sessions ADD COLUMN last_message_id TEXT;
"""

# Version 7 lets several gateway nodes share one (PostgreSQL) database: each node's heartbeat
# row, and the lease through which at most one node at a time owns a session. The epoch grows
# each time the session changes hands; every write of a turn checks it in its own transaction
# (store/leases.py), so a node that lost a session can no longer write for it. Unused on a
# single SQLite node.
_NODES_AND_SESSION_LEASES = """
        CREATE TABLE nodes (
            id           TEXT PRIMARY KEY,   -- gateway.node_id (default host:pid)
            host         TEXT NOT NULL,
            pid          INTEGER NOT NULL,
            state        TEXT NOT NULL,      -- running | draining | stopped (NodeState)
            started_at   REAL NOT NULL,
            heartbeat_at REAL NOT NULL
        );

        CREATE TABLE session_leases (
            session_id INTEGER NOT NULL PRIMARY KEY REFERENCES sessions(id),
            owner      TEXT,                 -- a node id; NULL once released
            epoch      INTEGER NOT NULL,
            expires_at REAL NOT NULL
        );
        CREATE INDEX session_leases_by_owner ON session_leases(owner) WHERE owner IS NOT NULL;

        -- Platforms that allow one consumer of their updates (Telegram's getUpdates): the
        -- node holding this lease polls, the others wait to take it over.
        CREATE TABLE intake_leases (
            name       TEXT PRIMARY KEY,     -- the adapter's platform
            owner      TEXT,
            epoch      INTEGER NOT NULL,
            expires_at REAL NOT NULL
        );
"""

# Version 8 records where each background job runs (the host and, on PostgreSQL, the node that
# started it), so a node taking over a dead node's sessions re-adopts only the jobs on its own
# machine and never signals a PID that belongs to another; and when a boot or a takeover found
# each turn dead with its gateway, the evidence of the restart-loop guard per session.
_JOB_HOSTS_AND_CRASH_TIMES = """
        ALTER TABLE processes ADD COLUMN host TEXT;   -- NULL: from before version 8 (this host)
        ALTER TABLE processes ADD COLUMN node TEXT;
        ALTER TABLE turns ADD COLUMN recovered_at REAL;  -- set with outcome 'crashed'
"""

# Version 9 makes the candidates' partial index covering: it holds every column of a record
# (the rowid is the session id), so the boot's scan reads its candidates' records from a few
# adjacent index pages instead of one page of the recovery table per candidate (each on a
# page of its own, however large the table). Only the candidates are in it, so an idle
# store's records cost it nothing. PostgreSQL keeps its index as it was
# (schema_postgresql.py): a btree entry there is refused over ~2.7 KB, and an explanation can
# be longer.
_COVERING_CANDIDATES = """
        DROP INDEX recovery_candidates;
        CREATE INDEX recovery_candidates ON recovery(state, reason, marked_at, last_verdict,
            last_explanation, attempts, last_attempt_at, updated_at, told)
            WHERE state != 'none';
"""

# Version 10 indexes the sends in doubt. Every boot marks the replies left 'sending' as
# 'unknown' and counts the 'unknown' ones (and a node taking over looks for a dead node's
# sends in flight); replies are kept once sent, so without these each was a scan of every
# reply ever sent: ~0.55 s of a boot on a store with 2.5 million of them. Rows pass through
# 'sending' briefly, and 'unknown' ones wait for an operator: both indexes stay small.
_SENDS_IN_DOUBT = """
        CREATE INDEX outbox_sending ON outbox(session_id) WHERE status = 'sending';
        CREATE INDEX outbox_unknown ON outbox(session_id) WHERE status = 'unknown';
"""

# Version 11 records the last batch the SQLite writer's process committed, in the same
# transaction as the batch (store/write_marks.py). When that process dies with batches
# unanswered, the writer reads it: the batches after it were rolled back with the process and
# are run again on the writer's thread, so their callers get real outcomes instead of "unknown"
# (only a batch committed in the moment before its answer was sent stays unknown). One row,
# rewritten by every batch: one page more per group commit. On PostgreSQL (whose writes
# never leave the gateway's process) the table is made, to keep one schema, and never written.
_WRITE_MARKS = """
        CREATE TABLE write_marks (
            id    INTEGER PRIMARY KEY CHECK (id = 1),
            batch INTEGER NOT NULL
        );
        INSERT INTO write_marks (id, batch) VALUES (1, 0);
"""

MIGRATIONS: tuple[str, ...] = (
    _V1_CORE,
    _V2_PROCESSES_AUDIT_LOOP_GUARD,
    _V3_ACTIVE_TURN,
    _V4_TURNS_TOOL_CALLS_TOLD,
    _DELIVERY_PIECES_AND_WORKING_NOTICES,
    _REPLY_ANCHORS,
    _NODES_AND_SESSION_LEASES,
    _JOB_HOSTS_AND_CRASH_TIMES,
    _COVERING_CANDIDATES,
    _SENDS_IN_DOUBT,
    _WRITE_MARKS,
)
LATEST_VERSION = len(MIGRATIONS)
