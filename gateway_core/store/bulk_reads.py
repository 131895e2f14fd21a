"""The reads of one large scan, spread over several connections (`Store.bulk_reads`).

The same read API as the store's (the recovery records, transcripts and turns), over a reader
that runs `parallel` queries at once: a caller cuts its work into that many chunks and asks
for them together (asyncio.gather). On SQLite that reader is a ReadPool made for this scan;
on PostgreSQL it is the store's own pool of read connections, which already runs concurrent
queries on separate connections; with one connection it is the store's reader itself.
"""

from __future__ import annotations

from gateway_core.clock import Clock
from gateway_core.store.recovery_records import RecoveryRecords
from gateway_core.store.transaction import RowReader, TransactionQueue
from gateway_core.store.transcript import Transcript
from gateway_core.store.turns import Turns


class BulkReads:
    def __init__(
        self, writer: TransactionQueue, reader: RowReader, clock: Clock, parallel: int
    ) -> None:
        self.parallel = parallel  # how many of its reads run at once
        self.recovery = RecoveryRecords(writer, reader, clock)
        self.transcript = Transcript(writer, reader, clock)
        self.turns = Turns(reader)
