"""The SQLite writer's own process, with a real store file, a real child process and real
signals: jobs are committed there, in order with the bodies the writer's thread runs, and
nothing is lost silently when the child dies (its callers hear that the outcome is unknown,
and the writer goes on on its thread)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import psutil
import pytest

from gateway_core.clock import ManualClock
from gateway_core.store import Store
from gateway_core.store.errors import DatabaseLocked, StoreError
from gateway_core.store.job import job
from gateway_core.store.transaction import Transaction
from gateway_core.store.write_process import WriteProcessGone
from tests.support.process_lines import command_line

# The jobs of these tests: module-level functions, so the child can import them by name.


def writer_pid(db: Transaction) -> int:
    return os.getpid()


def note(db: Transaction, text: str) -> int:
    row = db.execute(
        "INSERT INTO audit (at, actor, action, outcome) VALUES (0, 'test', ?, 'ok') RETURNING id",
        (text,),
    ).fetchone()
    return int(row[0])


def note_on_thread(db: Transaction, *, text: str) -> int:
    """note(), as a body that is not a job (the writer's thread runs it)."""
    return note(db, text)


def fail(db: Transaction, text: str) -> None:
    note(db, text)
    raise ValueError(f"refused: {text}")


def stall_on(db: Transaction, fifo: str, gateway_pid: int) -> int:
    """In the writer's process, holds it in its transaction until someone writes to the
    named pipe `fifo` (opening it for reading blocks until a writer opens it). Run again on
    the gateway's own writer thread, it only writes its row."""
    written = note(db, "stalled")
    if os.getpid() != gateway_pid:
        with open(fifo) as pipe:
            pipe.read(1)
    return written


def big_answer(db: Transaction, text: str) -> str:
    """A row, and a result larger than the pipe the child answers on (1 MiB): the child
    commits, then blocks writing its answer until the gateway's loop reads it."""
    note(db, text)
    return "x" * (3 << 20)


def refuse_to_load() -> None:
    raise RuntimeError("this answer cannot be read here")


class Unloadable:
    """Pickles in the child; loading it in the gateway raises (an answer it cannot read)."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (refuse_to_load, ())


def unreadable_answer(db: Transaction, text: str) -> Unloadable:
    note(db, text)
    return Unloadable()


async def notes(store: Store) -> list[str]:
    return [entry.action for entry in reversed(await store.audit.recent(100_000))]


@pytest.fixture
async def opened(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(tmp_path / "state" / "switchboard.db", clock=ManualClock())
    try:
        assert await store.write_process_started()
        yield store
    finally:
        await store.close()


async def test_a_job_is_committed_by_the_writer_process_and_a_closure_on_the_thread(
    opened: Store,
) -> None:
    in_process = await opened.write(job(writer_pid))
    on_thread = await opened.write(lambda db: os.getpid())
    assert in_process == opened.write_process_pid
    assert in_process != os.getpid()
    assert on_thread == os.getpid()


def write_processes() -> list[psutil.Process]:
    return [
        child
        for child in psutil.Process().children()
        if "gateway_core.store.write_process" in command_line(child)
    ]


async def test_a_store_that_writes_no_job_starts_no_process(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "switchboard.db", clock=ManualClock()) as store:
        assert await store.write(partial(note_on_thread, text="a closure")) > 0
        assert await store.audit.recent(1)
        assert write_processes() == []
        assert await store.write(job(note, "a job")) > 0  # on the thread while it starts
        assert await store.write_process_started()
        assert [p.pid for p in write_processes()] == [store.write_process_pid]
    assert write_processes() == []


async def test_jobs_and_closures_commit_in_the_order_they_were_submitted(opened: Store) -> None:
    futures = []
    for n in range(60):
        text = f"w{n}"
        if n % 7 in (3, 4):  # runs of closures among the jobs
            futures.append(opened.write_soon(partial(note_on_thread, text=text)))
        else:
            futures.append(opened.write_soon(job(note, text)))
    ids = await asyncio.gather(*futures)
    assert ids == sorted(ids)
    assert await notes(opened) == [f"w{n}" for n in range(60)]


async def test_a_job_that_raises_fails_alone_and_the_rest_of_its_batch_commits(
    opened: Store,
) -> None:
    results = await asyncio.gather(
        opened.write_soon(job(note, "before")),
        opened.write_soon(job(fail, "bad")),
        opened.write_soon(job(note, "after")),
        return_exceptions=True,
    )
    assert isinstance(results[1], ValueError) and "refused: bad" in str(results[1])
    assert await notes(opened) == ["before", "after"]


async def test_a_stop_signal_to_every_process_is_the_gateways_to_answer(opened: Store) -> None:
    # systemd's SIGTERM at a stop reaches the whole unit, a terminal's Ctrl-C the whole
    # foreground group: the writer's process goes on committing the gateway's drain.
    pid = opened.write_process_pid
    assert pid is not None
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        os.kill(pid, signum)
    assert await opened.write(job(writer_pid)) == pid
    assert opened.write_process_pid == pid


async def kill_while_stalled(
    store: Store, tmp_path: Path, *behind: str
) -> tuple[asyncio.Future[int], list[asyncio.Future[int]]]:
    """A batch held in the writer's process's transaction and a batch behind it for each
    text in `behind`, then the process killed there: none of them is committed. Their
    callers' futures."""
    fifo = tmp_path / "hold"
    os.mkfifo(fifo)
    pid = store.write_process_pid
    assert pid is not None
    stalled = store.write_soon(job(stall_on, str(fifo), os.getpid()))
    queued = [store.write_soon(job(note, text)) for text in behind]
    # Opening the pipe for writing returns once the child has opened it for reading: it is
    # in the first batch's transaction then (a row written, not committed). Kill it there.
    held = await asyncio.to_thread(os.open, fifo, os.O_WRONLY)
    os.kill(pid, signal.SIGKILL)
    os.close(held)
    return stalled, queued


async def test_when_the_writer_process_dies_what_it_had_not_committed_runs_again_on_the_thread(
    opened: Store, tmp_path: Path
) -> None:
    stalled, (behind,) = await kill_while_stalled(opened, tmp_path, "behind")
    # Neither batch was committed (the killed transaction was rolled back, the one behind it
    # never began): both ran again on the writer's thread, in order, and their callers have
    # their real results; the store still takes writes, on the thread.
    assert await stalled > 0
    assert await behind > await stalled
    assert await opened.write(job(note, "later")) > 0
    assert opened.write_process_pid is None
    assert await notes(opened) == ["stalled", "behind", "later"]
    assert opened.writer_stats.rerun_after_process_died == 2
    assert opened.writer_stats.unknown_after_process_died == 0


async def test_a_batch_committed_before_the_writer_process_died_is_not_run_again(
    opened: Store, tmp_path: Path
) -> None:
    pid = opened.write_process_pid
    assert pid is not None
    path = tmp_path / "state" / "switchboard.db"

    def kill_once_committed() -> None:
        """Runs on the event loop right after the writer sent the batch (the writer's task
        was woken first), so the loop reads no answer meanwhile: the child commits, blocks
        writing its 3 MiB answer into a 1 MiB pipe, and is killed there."""
        watcher = sqlite3.connect(path)
        try:
            deadline = time.monotonic() + 30
            while not watcher.execute(
                "SELECT count(*) FROM audit WHERE action = 'committed'"
            ).fetchone()[0]:
                assert time.monotonic() < deadline, "the batch was never committed"
                time.sleep(0.005)
        finally:
            watcher.close()
        os.kill(pid, signal.SIGKILL)

    answered = opened.write_soon(job(big_answer, "committed"))
    asyncio.get_running_loop().call_soon(kill_once_committed)
    with pytest.raises(WriteProcessGone, match="whether this write was committed is unknown"):
        await answered
    assert await opened.write(job(note, "later")) > 0
    assert opened.write_process_pid is None
    # Committed once, and not written again by the writer's thread.
    assert await notes(opened) == ["committed", "later"]
    assert opened.writer_stats.rerun_after_process_died == 0
    assert opened.writer_stats.unknown_after_process_died == 1


def test_the_writer_process_dies_with_a_gateway_killed_outright(tmp_path: Path) -> None:
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from gateway_core.store import Store\n"
        "async def main():\n"
        "    store = await Store.open(Path(sys.argv[1]))\n"
        "    assert await store.write_process_started()\n"
        "    print(store.write_process_pid, flush=True)\n"
        "    await asyncio.Event().wait()\n"
        "asyncio.run(main())\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "switchboard.db")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        child = psutil.Process(int(owner.stdout.readline()))
        assert child.ppid() == owner.pid
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        child.wait(10)  # psutil.TimeoutExpired if it outlived its gateway
    finally:
        if owner.poll() is None:
            owner.kill()


def wait_until_dead(pid: int) -> None:
    """Until the child has exited, without reaping it (asyncio's child watcher does that)."""
    with contextlib.suppress(ChildProcessError):  # reaped already
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)


@pytest.mark.parametrize("turns", range(1, 7))
async def test_a_write_made_as_the_writer_process_dies_commits_after_what_it_left(
    opened: Store, tmp_path: Path, turns: int
) -> None:
    pid = opened.write_process_pid
    assert pid is not None
    stalled, _ = await kill_while_stalled(opened, tmp_path)
    wait_until_dead(pid)  # its end is in the pipe; the loop reads it from its next turn on
    # A write made `turns` turns of the loop later, from a timer (timers run after a turn's
    # I/O and callbacks), with the writer idle: one of these lands in the step after the
    # gateway learns the process is gone. It must commit after the batch the process left,
    # which runs again first.
    loop = asyncio.get_running_loop()
    later: asyncio.Future[asyncio.Future[int]] = loop.create_future()

    def write_after(turn: int) -> None:
        if turn < turns:
            loop.call_later(0, write_after, turn + 1)
        else:
            later.set_result(opened.write_soon(job(note, "later")))

    write_after(0)
    assert await stalled < await (await later)
    assert await notes(opened) == ["stalled", "later"]


async def test_a_batch_whose_mark_cannot_be_written_is_not_committed(opened: Store) -> None:
    # Committed without its mark, a batch the process then left unanswered would look
    # uncommitted and be written twice: so the mark fails the batch whole.
    await opened.write(
        lambda db: db.execute(
            "CREATE TRIGGER refuse_marks BEFORE UPDATE ON write_marks "
            "BEGIN SELECT RAISE(ABORT, 'marks refused'); END"
        )
    )
    results = await asyncio.gather(
        opened.write_soon(job(note, "one")),
        opened.write_soon(job(note, "two")),
        return_exceptions=True,
    )
    assert all(isinstance(r, StoreError) and "marks refused" in str(r) for r in results)
    assert await notes(opened) == []


async def test_a_batch_refused_whole_by_a_lock_leaves_the_marks_in_use(tmp_path: Path) -> None:
    path = tmp_path / "switchboard.db"
    store = await Store.open(path, clock=ManualClock(), busy_timeout=0.2)
    try:
        assert await store.write_process_started()
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(DatabaseLocked):
            await store.write(job(note, "locked out"))
        other.execute("ROLLBACK")
        other.close()
        # The failed batch's mark failed with it, as every write of it did: the marks still
        # tell what a process that dies had committed.
        stalled, (behind,) = await kill_while_stalled(store, tmp_path, "behind")
        assert await stalled < await behind
        assert store.writer_stats.rerun_after_process_died == 2
        assert await notes(store) == ["stalled", "behind"]
    finally:
        await store.close()


async def test_an_answer_the_gateway_cannot_read_leaves_its_committed_batch_unknown(
    opened: Store,
) -> None:
    # The child committed the batch, then sent an answer the gateway cannot load: nothing
    # more from that child is trusted, so it is killed (and waited for), and its batch,
    # committed by the mark the store holds, is not written again: its caller hears that
    # the outcome is unknown.
    pid = opened.write_process_pid
    assert pid is not None
    with pytest.raises(WriteProcessGone, match="whether this write was committed is unknown"):
        await opened.write(job(unreadable_answer, "committed"))
    assert opened.write_process_pid is None
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert await opened.write(job(note, "later")) > 0
    assert await notes(opened) == ["committed", "later"]
    assert opened.writer_stats.unknown_after_process_died == 1
    assert opened.writer_stats.rerun_after_process_died == 0
