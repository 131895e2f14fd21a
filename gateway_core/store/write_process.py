"""The SQLite writer's own process: group commits of jobs on the machine's other core.

Why a process: the event loop and a writer thread share one interpreter lock, so they take
turns (bench/intake.py's `threads_share_of_wall` sums to ~1.0 at saturation): a message costs
the two threads' CPU added up, even on two cores. In a process of its own, the writer's
statements, SQLite's work and the Python around them, run beside the loop instead.

The gateway's side (`WriteProcess`) starts the child (this module's main(), on the gateway's
own interpreter and import path) with the database's path. The child opens its own write
connection and answers on its stdout, a pipe: one frame per batch, each a 4-byte length and a
pickle. Parent to child: a list of jobs (store/job.py) and the header job they commit with
(the batch's mark), which the child runs in ONE transaction with the same group commit as
the writer's thread (store/group_commit.py). Child to parent: each job's outcome and the
seconds the transaction took. At most `IN_FLIGHT` batches are out at once, answered in
order, so the child has the next batch at hand while the loop handles the last one's answers
(how the writer cuts its batches for that: writer.py).

Durability is the thread's: a caller's future resolves only once the child says its batch is
committed. The child dies with the gateway (PR_SET_PDEATHSIG on Linux; EOF on its stdin
otherwise), so a crashed gateway's transaction in flight is rolled back, as a thread's would
be. If the child dies on its own, the batches it had are failed with `WriteProcessGone` and
the writer goes on on its thread; there it runs again those the child had not committed (the
batch marks, store/write_marks.py) and passes the error on only for one that was committed
and whose answer was lost.

Only the writer talks to this module (store/writer.py): it decides which jobs come here and
keeps their order with the bodies it runs on its thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import pickle
import signal
import struct
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from gateway_core.store.errors import StoreError
from gateway_core.store.group_commit import Body, Outcome, commit_batch

log = logging.getLogger(__name__)

# Batches out at once: one being committed, the next already in the child's pipe.
IN_FLIGHT = 2
# Seconds a stop waits for the child to commit what it has and exit, before it is killed.
EXIT_WITHIN = 10.0
_HEADER = struct.Struct(">I")
_READY, _FAILED, _UNREADABLE = "ready", "failed", "unreadable"
# The child's first lines: the gateway's import path, then main() below.
_BOOTSTRAP = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from gateway_core.store.write_process import main; sys.exit(main(sys.argv[2:]))"
)


class WriteProcessGone(StoreError):
    """The writer's process ended before it answered: the batch's outcome is unknown."""


class WriteProcess:
    """The gateway's handle on the writer's process: send a batch of jobs, get its outcomes."""

    def __init__(self, path: Path, child: asyncio.subprocess.Process) -> None:
        self._path = path
        self._child = child
        self._sent: deque[asyncio.Future[tuple[list[Outcome], float]]] = deque()
        self._sizes: deque[int] = deque()  # the jobs of each batch out, in the same order
        self._ready = False
        self._gone = False
        self._started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reading = asyncio.get_running_loop().create_task(
            self._read_answers(), name="store-write-process"
        )

    @classmethod
    async def start(cls, path: Path, synchronous: str, busy_timeout: float) -> WriteProcess:
        """Start the child; it takes batches once it has said it is ready (`ready`), which
        the caller need not wait for: until then the writer commits on its thread."""
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _BOOTSTRAP,
            # The gateway's own import path: the child runs the very code the gateway runs
            # (not whatever a `gateway_core` in its working directory would be), and finds
            # every module a job's function is defined in.
            json.dumps(sys.path),
            str(path),
            synchronous,
            str(busy_timeout),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            # Never the operator's terminal: a console may be drawing on it.
            stderr=asyncio.subprocess.DEVNULL,
        )
        return cls(path, child)

    @property
    def ready(self) -> bool:
        """Taking batches: started, and not gone."""
        return self._ready and not self._gone

    @property
    def in_flight(self) -> int:
        """Batches sent and not yet answered."""
        return len(self._sent)

    @property
    def committing(self) -> int | None:
        """The jobs of the batch the process is committing now (the oldest out), if any."""
        return self._sizes[0] if self._sizes else None

    def answered(self) -> asyncio.Future[Any]:
        """Done once the batch being committed now is answered (at once if none is)."""
        if self._sent:
            return self._sent[0]
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    @property
    def pid(self) -> int:
        return self._child.pid

    async def started(self) -> bool:
        """Until the child is ready or has failed to start; whether it is ready."""
        await asyncio.shield(self._started)
        return self.ready

    def send(
        self, jobs: Sequence[Body], header: Body | None = None
    ) -> asyncio.Future[tuple[list[Outcome], float]]:
        """Hand a batch over, with the header it commits with or not at all
        (store/group_commit.py); the future gives each job's outcome and the transaction's
        seconds once it is committed, or WriteProcessGone. Raises (before anything is sent)
        if a job cannot be pickled."""
        data = pickle.dumps((header, list(jobs)), protocol=pickle.HIGHEST_PROTOCOL)
        answer: asyncio.Future[tuple[list[Outcome], float]]
        answer = asyncio.get_running_loop().create_future()
        if not self.ready:
            answer.set_exception(self._gone_error())
            return answer
        assert self._child.stdin is not None
        self._child.stdin.write(_HEADER.pack(len(data)) + data)
        self._sent.append(answer)
        self._sizes.append(len(jobs))
        return answer

    async def slot(self) -> None:
        """Until fewer than IN_FLIGHT batches are out."""
        while len(self._sent) >= IN_FLIGHT:
            await asyncio.wait((self._sent[0],))

    async def idle(self) -> None:
        """Until every batch sent is answered (committed, or failed)."""
        while self._sent:
            await asyncio.wait((self._sent[-1],))

    async def close(self) -> None:
        """Let the child commit what it has and exit (its stdin closed); killed if it does
        not within EXIT_WITHIN seconds."""
        await self.idle()
        if not self._ready and self._child.returncode is None:
            # Still starting (a short-lived store): it holds nothing of ours, so it need not
            # finish starting only to be told to stop.
            with contextlib.suppress(ProcessLookupError):
                self._child.kill()
        stdin = self._child.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()
        try:
            await asyncio.wait_for(self._child.wait(), EXIT_WITHIN)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self._child.kill()
            await self._child.wait()
        await self._reading

    async def _read_answers(self) -> None:
        stdout = self._child.stdout
        assert stdout is not None
        try:
            while True:
                header = await stdout.readexactly(_HEADER.size)
                answer = pickle.loads(await stdout.readexactly(_HEADER.unpack(header)[0]))
                if not self._ready:
                    self._hear_start(answer)
                    continue
                sent = self._sent.popleft()
                self._sizes.popleft()
                if sent.done():
                    continue
                if answer[0] == _UNREADABLE:
                    sent.set_exception(
                        StoreError(
                            f"{self._path}: the store's writer process could not read a batch "
                            f"({answer[1]}); nothing of it was written"
                        )
                    )
                else:
                    sent.set_result(answer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the child exited (a stop closed its stdin, or it died)
        except Exception:  # a frame we cannot read: nothing more from this child is trusted
            log.exception("the store's writer process sent an unreadable answer")
            with contextlib.suppress(ProcessLookupError):
                self._child.kill()
        finally:
            try:
                # Gone for sure before the writer reads what it committed
                # (store/write_marks.py): a child still finishing a commit would make a batch
                # read as uncommitted.
                await self._child.wait()
            finally:
                self._end()  # even if this task is cancelled meanwhile: no batch left pending

    def _hear_start(self, answer: Any) -> None:
        kind, detail = answer
        if kind == _READY:
            self._ready = True
        else:
            log.error("the store's writer process did not start: %s", detail)
            self._gone = True
        if not self._started.done():
            self._started.set_result(None)

    def _end(self) -> None:
        was_ready = self.ready
        self._gone = True
        if not self._started.done():
            self._started.set_result(None)
        if self._sent:
            log.error(
                "the store's writer process ended (%s) with %d batch(es) unanswered; the "
                "writer goes on on its thread",
                self._child.returncode,
                len(self._sent),
            )
        elif was_ready and self._child.returncode not in (None, 0):
            log.error("the store's writer process ended (%s)", self._child.returncode)
        while self._sent:
            sent = self._sent.popleft()
            self._sizes.popleft()
            if not sent.done():
                sent.set_exception(self._gone_error())

    def _gone_error(self) -> WriteProcessGone:
        return WriteProcessGone(
            f"{self._path}: the store's writer process ended before it answered; whether "
            "this write was committed is unknown"
        )


# The child's side.


def _hear_only_the_gateway() -> None:
    """The gateway decides when this process stops (it closes our stdin) and it dies with
    the gateway: a terminal's Ctrl-C or hang-up, or systemd's SIGTERM to the whole unit at a
    stop, is the gateway's to answer. Dying of it here would fail the writes of a drain
    that is about to commit them."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)


def _die_with_parent() -> None:
    """On Linux, the kernel kills this process when the gateway's ends (even by SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


# Bytes each pipe holds (Linux; 64 KiB by default, the most an unprivileged process may set
# is usually 1 MiB): a batch's frame fits whole, so neither side waits for the other's event
# loop to come round and read the rest of it.
PIPE_BYTES = 1 << 20


def _widen(fd: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)


def _read_frame(stream: BinaryIO) -> bytes | None:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None  # the gateway closed our stdin (a stop) or is gone
    size = _HEADER.unpack(header)[0]
    data = stream.read(size)
    return data if len(data) == size else None


def _write_frame(stream: BinaryIO, payload: Any) -> None:
    try:
        data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as error:  # a result that cannot go back: its caller hears why
        outcomes, seconds = payload
        data = pickle.dumps(([_sendable(o, error) for o in outcomes], seconds))
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _sendable(outcome: Outcome, error: Exception) -> Outcome:
    try:
        pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return (False, StoreError(f"a write's result could not be sent back: {error}"))
    return outcome


def main(argv: Sequence[str]) -> int:
    """The child: `main([PATH, SYNCHRONOUS, BUSY_TIMEOUT])`, started by WriteProcess.start."""
    _hear_only_the_gateway()
    _die_with_parent()
    _widen(0)
    _widen(1)
    answers = os.fdopen(os.dup(1), "wb")
    # Anything else written to stdout (a stray print) must never land among the frames.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    batches = os.fdopen(0, "rb")
    path, synchronous, busy_timeout = Path(argv[0]), argv[1], float(argv[2])
    from gateway_core.store.database import open_write_connection

    try:
        db = open_write_connection(path, synchronous, busy_timeout)
    except Exception as error:
        _write_frame(answers, (_FAILED, str(error)))
        return 1
    _write_frame(answers, (_READY, os.getpid()))
    try:
        while (frame := _read_frame(batches)) is not None:
            try:
                header, jobs = pickle.loads(frame)
            except Exception as error:  # e.g. a job's module that does not import here
                _write_frame(answers, (_UNREADABLE, f"{type(error).__name__}: {error}"))
                continue
            started = time.perf_counter()
            outcomes = commit_batch(db, path, jobs, header)
            _write_frame(answers, (outcomes, time.perf_counter() - started))
    finally:
        db.close()
    return 0
