"""The background process registry with real subprocesses, a real store and real signals."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from gateway_core.clock import SystemClock
from gateway_core.model import ProcessState
from gateway_core.processes.killing import tree_of
from gateway_core.processes.output import MAX_LINE
from gateway_core.processes.registry import ProcessRegistry, TrackedProcess
from gateway_core.store import Store


@pytest.fixture
async def registry(store: Store, tmp_path: Path) -> AsyncIterator[ProcessRegistry]:
    processes = ProcessRegistry(store, SystemClock(), tmp_path / "jobs")
    try:
        yield processes
    finally:
        await processes.kill_all(grace=0.5)
        await processes.close()


async def finished(tracked: TrackedProcess, within: float = 15) -> None:
    async with asyncio.timeout(within):
        await tracked.finished.wait()


def tree_pids(pid: int) -> set[int]:
    leader = psutil.Process(pid)
    return {pid, *(child.pid for child in leader.children(recursive=True))}


def gone(pids: set[int]) -> bool:
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True


async def descendants(pid: int, count: int, within: float = 10) -> set[int]:
    """Wait until the job has started its own children (they appear asynchronously)."""
    async with asyncio.timeout(within):
        # A process table has no event to wait on: poll it, bounded.
        while len(pids := tree_pids(pid)) < count + 1:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    return pids


async def cpu_burnt(pid: int, seconds: float, within: float = 30) -> None:
    """Wait until the process tree under pid has used `seconds` of CPU time since now."""

    def used() -> float:
        tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        return sum(sum(p.cpu_times()[:2]) for p in tree)

    start = used()
    async with asyncio.timeout(within):
        # CPU time has no event to wait on: poll it, bounded.
        while used() - start < seconds:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_output_and_exit_code_are_recorded(registry: ProcessRegistry, store: Store) -> None:
    job = await registry.start("printf 'first\\nsecond\\n'; exit 7", session_id=None, generation=1)
    await finished(job)
    assert (job.state, job.record.exit_code) == (ProcessState.EXITED, 7)
    assert job.output.tail() == ["first", "second"]
    assert Path(job.record.log_path or "").read_text() == "first\nsecond\n"
    saved = await store.processes.get(job.id)
    assert saved is not None and (saved.state, saved.exit_code) == ("exited", 7)


def ignores_sigterm(pid: int) -> bool:
    """Whether the process has SIGTERM set to ignored (its SigIgn mask in /proc)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("SigIgn:"):
                    return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    except FileNotFoundError:
        pass
    return False


async def test_kill_takes_down_a_grandchild_that_ignores_sigterm(
    registry: ProcessRegistry,
) -> None:
    job = await registry.start(
        "sh -c 'trap \"\" TERM; sleep 1000' & sleep 1000", session_id=None, generation=1
    )
    assert job.record.pid is not None
    # The tree: the wrapper, the job's shell, the inner shell and the outer sleep, then the
    # inner sleep, forked only once the inner shell has run its trap. Counting three would
    # let the kill start before the trap (SIGTERM alone would then do): wait for all four,
    # and check the precondition itself rather than trust the count.
    pids = await descendants(job.record.pid, 4)
    assert any(ignores_sigterm(pid) for pid in pids)
    result = await registry.kill(job.id, grace=0.5)
    assert result.killed and result.escalated and result.survivors == ()
    assert gone(pids)
    assert job.state == ProcessState.KILLED and job.record.exit_code is None


async def test_kill_finds_a_descendant_that_left_the_process_group(
    registry: ProcessRegistry,
) -> None:
    job = await registry.start("setsid sleep 1000 & sleep 1000", session_id=None, generation=1)
    assert job.record.pid is not None
    pids = await descendants(job.record.pid, 2)
    result = await registry.kill(job.id, grace=0.5)
    assert result.killed
    assert gone(pids)


async def test_kill_takes_down_what_the_job_starts_while_it_is_being_killed(
    registry: ProcessRegistry, tmp_path: Path
) -> None:
    # On SIGTERM the job's shell starts a process in a session of its own (out of reach of
    # the group's signal, and born after the tree was first listed), then goes on waiting.
    late = tmp_path / "late.pid"
    job = await registry.start(
        f"trap '' TERM; sleep 1000 & trap 'setsid sleep 1000 & echo $! >{late}' TERM; "
        "while :; do wait; done",
        session_id=None,
        generation=1,
    )
    assert job.record.pid is not None
    pids = await descendants(job.record.pid, 2)  # the job's shell and its first sleep
    result = await registry.kill(job.id, grace=0.5)
    assert late.exists(), "the job's trap never ran: the test proves nothing"
    late_pid = int(late.read_text())
    assert late_pid not in pids
    assert result.killed and result.escalated
    assert gone({*pids, late_pid})


async def test_hostile_output_is_decoded_bounded_and_never_fatal(
    registry: ProcessRegistry,
) -> None:
    script = (
        "import sys; w = sys.stdout.buffer.write; "
        "w(b'A' * 1_000_000); "
        "w(b'\\nbad \\xff\\xfe bytes\\n\\x1b]0;pwned\\x07\\x1b[5m blink')"
    )
    job = await registry.start(f'{sys.executable} -c "{script}"', session_id=None, generation=1)
    await finished(job)
    assert job.record.exit_code == 0
    lines = job.output.tail(1000)
    assert lines[-2] == "bad \ufffd\ufffd bytes"
    assert lines[-1] == "\x1b]0;pwned\x07\x1b[5m blink"  # kept as text; the console sanitises
    # The megabyte without a newline was cut into bounded pieces and the oldest dropped.
    assert all(len(line) <= MAX_LINE for line in lines)
    assert len(job.output.text()) <= 200_000 + MAX_LINE
    assert job.output.total_bytes > 1_000_000 and job.output.total_lines > 60


async def test_a_job_left_running_is_adopted_after_a_restart(store: Store, tmp_path: Path) -> None:
    first = ProcessRegistry(store, SystemClock(), tmp_path / "jobs")
    job = await first.start("echo started; sleep 1000", session_id=None, generation=1)
    await first.close()  # the gateway goes away; the job does not
    second = ProcessRegistry(store, SystemClock(), tmp_path / "jobs")
    try:
        (adopted,) = await second.adopt_jobs()
        assert adopted.id == job.id and adopted.detached and adopted.state == "running"
        result = await second.kill(job.id, grace=0.5)
        assert result.killed and adopted.state == ProcessState.KILLED
        assert adopted.output.tail() == ["started"]
    finally:
        await second.kill_all(grace=0.5)
        await second.close()


async def test_a_job_that_finished_while_the_gateway_was_down_keeps_its_exit_code(
    store: Store, tmp_path: Path
) -> None:
    first = ProcessRegistry(store, SystemClock(), tmp_path / "jobs")
    job = await first.start("sleep 0.3; exit 3", session_id=None, generation=1)
    await first.close()
    status = Path(job.record.log_path or "").with_suffix(".status")
    pid, started_at = job.record.pid, job.record.pid_started_at
    assert pid is not None
    async with asyncio.timeout(10):
        # The job ends on its own while no registry watches it: poll its status file, and
        # the wrapper's exit (it writes the status first; alive, it would be re-adopted).
        while not status.exists() or tree_of(pid, started_at):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    second = ProcessRegistry(store, SystemClock(), tmp_path / "jobs")
    try:
        assert await second.adopt_jobs() == []
        tracked = second.get(job.id)
        assert tracked is not None
        assert (tracked.state, tracked.record.exit_code) == (ProcessState.EXITED, 3)
    finally:
        await second.close()


async def test_a_reused_pid_is_never_signalled_and_a_vanished_job_is_lost(
    store: Store, tmp_path: Path
) -> None:
    first = ProcessRegistry(store, SystemClock(), tmp_path / "jobs")
    job = await first.start("sleep 1000", session_id=None, generation=1)
    await first.kill(job.id, grace=0.5)
    await first.close()
    # Two records a crashed gateway could leave: one whose PID now belongs to another
    # process (this test's own), one whose PID is gone without a status file.
    reused = replace(
        job.record,
        id="proc_reused",
        pid=os.getpid(),
        pid_started_at=1.0,
        state=ProcessState.RUNNING,
    )
    vanished = replace(job.record, id="proc_vanished", pid=2**22 + 7, state=ProcessState.RUNNING)
    vanished = replace(vanished, log_path=str(tmp_path / "jobs" / "nothing.log"))
    reused = replace(reused, log_path=str(tmp_path / "jobs" / "nothing-either.log"))
    await store.processes.save(reused)
    await store.processes.save(vanished)
    second = ProcessRegistry(store, SystemClock(), tmp_path / "jobs")
    try:
        assert await second.adopt_jobs() == []
        for process_id in ("proc_reused", "proc_vanished"):
            tracked = second.get(process_id)
            assert tracked is not None
            assert (tracked.state, tracked.record.exit_code) == (ProcessState.LOST, None)
        result = await second.kill("proc_reused")
        assert result.killed  # nothing to do: it is not ours...
        assert psutil.Process(os.getpid()).is_running()  # ...and we were never signalled
    finally:
        await second.close()


async def test_sampling_reads_cpu_memory_and_children_of_each_tree(
    registry: ProcessRegistry,
) -> None:
    busy = await registry.start(
        f'{sys.executable} -c "while True: pass"', session_id=None, generation=1
    )
    family = await registry.start("sleep 1000 & sleep 1000 & wait", session_id=None, generation=1)
    assert family.record.pid is not None
    await descendants(family.record.pid, 2)
    await registry.sample_once()  # the first tick has no earlier reading to compare with
    assert busy.record.pid is not None
    await cpu_burnt(busy.record.pid, 0.2)  # however loaded the machine is
    await registry.sample_once()
    assert busy.sample is not None and family.sample is not None
    assert family.sample.children == 2 and family.sample.rss > 0
    # The busy tree burnt at least 0.2 s of CPU between the ticks; the sleepers almost none.
    assert busy.sample.cpu_percent > 0
    assert family.sample.cpu_percent < busy.sample.cpu_percent


async def test_exactly_one_ending_per_job_when_kill_and_the_reader_race(
    registry: ProcessRegistry,
) -> None:
    endings: list[str] = []
    registry.on_exit(lambda job: endings.append(job.id))
    jobs = [
        await registry.start(f"sleep 0.0{i % 5}", session_id=None, generation=1) for i in range(20)
    ]
    await asyncio.gather(*(registry.kill(job.id, grace=0.2) for job in jobs))
    for job in jobs:
        await finished(job)
    assert sorted(endings) == sorted(job.id for job in jobs)  # each exactly once


async def test_the_agents_kill_consumes_before_any_ending_is_announced(
    registry: ProcessRegistry,
) -> None:
    seen: list[bool] = []
    registry.on_exit(lambda job: seen.append(job.record.consumed))
    jobs = [
        await registry.start("sleep 1", session_id=None, generation=1, notify_on_complete=True)
        for _ in range(10)
    ]
    await asyncio.gather(*(registry.kill(job.id, grace=0.2, consume=True) for job in jobs))
    for job in jobs:
        await finished(job)
    # The kill's own SIGTERM ends the job, so the reader may notice the ending first: the
    # listener must still see it consumed. (A job that ended before the kill began is caught
    # by the notice turn's start transaction instead: test_process_notices.)
    assert seen == [True] * 10


async def test_a_readopted_job_does_not_match_what_it_wrote_before_the_restart(
    store: Store, tmp_path: Path
) -> None:
    first = ProcessRegistry(store, SystemClock(), tmp_path / "jobs")
    seen: list[str] = []
    matched = asyncio.Event()

    def watched(job: TrackedProcess, outcome: object) -> None:
        seen.append(type(outcome).__name__)
        matched.set()

    first.on_watch(watched)
    go = tmp_path / "go"
    job = await first.start(
        f"echo READY; while [ ! -e {go} ]; do sleep 0.05; done; echo READY again; sleep 30",
        session_id=None,
        generation=1,
        watch_patterns=("READY",),
    )
    async with asyncio.timeout(10):
        await matched.wait()
    await first.close()  # the gateway stops; the job runs on

    second = ProcessRegistry(store, SystemClock(), tmp_path / "jobs")
    again: list[object] = []
    matched_again = asyncio.Event()

    def watched_again(job: TrackedProcess, outcome: object) -> None:
        again.append(getattr(outcome, "lines", outcome))
        matched_again.set()

    second.on_watch(watched_again)
    try:
        (adopted,) = await second.adopt_jobs()
        assert adopted.id == job.id and "READY" in adopted.output.text()
        go.touch()  # new output after the restart is watched as before
        async with asyncio.timeout(10):
            await matched_again.wait()
        assert again == [("READY again",)]  # the new line only: the old one is not told twice
        assert adopted.watcher is not None and adopted.watcher.delivered == 1
    finally:
        await second.kill_all(grace=0.5)
        await second.close()


async def test_a_job_that_could_not_be_started_is_lost_and_already_consumed(
    registry: ProcessRegistry, store: Store, tmp_path: Path
) -> None:
    """Its tool call fails with the error; no notice turn may tell the agent again."""
    with pytest.raises(OSError):
        await registry.start(
            "echo never", session_id=None, generation=1, cwd=str(tmp_path / "missing")
        )
    (job,) = registry.all()
    stored = await store.processes.get(job.id)
    assert stored is not None
    assert (stored.state, stored.consumed) == (ProcessState.LOST, True)
