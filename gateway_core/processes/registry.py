"""The registry of background processes started by agent tools.

Each job runs under a tiny /bin/sh wrapper, in its own session (process group = its pid):

    sh -c 'printf %s "$$" >"$3.pid"; sh -c "$1" >"$2" 2>&1; code=$?;
           umask 077; printf %s "$code" >"$3.tmp"; mv "$3.tmp" "$3"'

so the job's output goes to its own log file and its exit code to a status file. Nothing of
the job is attached to the gateway by a pipe: a gateway crash cannot SIGPIPE it, waiting for
it cannot hang on a grandchild that inherited a pipe, and a restarted gateway can still learn
how it ended. The registry tails the log into a bounded buffer. After a restart, a record
whose PID is alive with the same start time is adopted (detached); one that finished meanwhile
is closed with the code from its status file; anything else is closed as lost, never with an
invented exit code, and a reused PID is never signalled.

The record (with the tool call that asked for the job) is committed BEFORE the job is
spawned, so no job can run that the store does not know of. A crash between the spawn and the
commit of its PID leaves a record without one: the wrapper writes its own PID to a file
first thing, and adoption finds the job through that file (checked against the wrapper's
command line, which names the job's log, so a reused PID is never taken for it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import psutil

from gateway_core.clock import Clock
from gateway_core.model import JobRecord, ProcessState
from gateway_core.private_files import private_file
from gateway_core.processes.killing import KillResult, kill_tree, tree_of
from gateway_core.processes.output import OutputBuffer
from gateway_core.processes.sampler import Sample, TreeSampler
from gateway_core.processes.watch import (
    Breaker,
    WatchDisabled,
    Watcher,
    WatchOutcome,
    WatchStatus,
)
from gateway_core.store import Store

log = logging.getLogger(__name__)

# Every file of a job is private (0600) while the command keeps the gateway's umask: the log
# and the PID file are created 0600 before the wrapper starts (a redirection keeps an existing
# file's mode), and the status file is written under umask 077 once the command has ended.
WRAPPER = (
    'printf %s "$$" >"$3.pid"; '
    'sh -c "$1" >"$2" 2>&1; code=$?; umask 077; printf %s "$code" >"$3.tmp"; mv "$3.tmp" "$3"'
)
# Seconds between reads of a running job's log: fast while it writes, backing off to
# TAIL_IDLE while it is quiet (hundreds of idle jobs must not keep the loop busy).
TAIL_EVERY = 0.2
TAIL_IDLE = 2.0
READ_CHUNK = 1 << 16


@dataclass
class TrackedProcess:
    record: JobRecord
    output: OutputBuffer = field(default_factory=OutputBuffer)
    detached: bool = False  # adopted after a restart: not our child
    sample: Sample | None = None  # the latest CPU / memory / children reading
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    watcher: Watcher | None = None
    _offset: int = 0
    _task: asyncio.Task[None] | None = None

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def state(self) -> ProcessState:
        return self.record.state


ExitListener = Callable[[TrackedProcess], None]
WatchListener = Callable[[TrackedProcess, WatchOutcome], None]


class ProcessRegistry:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        log_dir: Path,
        *,
        host: str | None = None,
        node: str | None = None,
    ) -> None:
        self._store = store
        # Where this registry's jobs run: recorded on each job (default: this machine's
        # name). On a node, the one machine whose PIDs it may watch or signal. On SQLite (no
        # node: one machine per file) the host is recorded but not consulted, so a machine
        # that was renamed keeps its jobs.
        self.host = host if host is not None else socket.gethostname()
        self.node = node
        self._clock = clock
        self._log_dir = log_dir
        self._processes: dict[str, TrackedProcess] = {}
        self._listeners: list[ExitListener] = []
        self._watch_listeners: list[WatchListener] = []
        self._sampler = TreeSampler()
        self.breaker = Breaker()  # shared by every job's watcher

    @property
    def last_sample_cpu(self) -> float:
        """CPU seconds the most recent sampling pass used."""
        return self._sampler.last_cpu_seconds

    async def sample_once(self) -> float:
        """Sample every running tree (in a thread); returns the seconds the sampling took."""
        roots = {
            p.id: p.record.pid
            for p in self._processes.values()
            if p.state == ProcessState.RUNNING and p.record.pid is not None
        }
        started = self._clock.monotonic()
        samples = await asyncio.to_thread(self._sampler.sample, roots, self._clock.monotonic())
        for job_id, reading in samples.items():
            # The wrapper's one child is the command itself, not a child of the command.
            self._processes[job_id].sample = replace(reading, children=max(reading.children - 1, 0))
        return self._clock.monotonic() - started

    async def sample_forever(self, interval: float = 1.0) -> None:
        """The sampling loop: run it as a task; cancel it to stop."""
        while True:
            await self.sample_once()
            await self._clock.sleep(interval)

    def on_exit(self, listener: ExitListener) -> None:
        self._listeners.append(listener)

    def on_watch(self, listener: WatchListener) -> None:
        self._watch_listeners.append(listener)

    def _track(self, record: JobRecord, *, detached: bool) -> TrackedProcess:
        watcher = Watcher(record.watch_patterns, self.breaker)
        if record.notify_on_complete and watcher.active:
            # The tool never starts a job with both; a job that has both had its watching
            # switched off (and notify-on-exit switched on) before a restart: keep it off.
            watcher.status = WatchStatus.DISABLED_STRIKES
        tracked = TrackedProcess(record, detached=detached, watcher=watcher)
        self._processes[record.id] = tracked
        return tracked

    def get(self, process_id: str) -> TrackedProcess | None:
        return self._processes.get(process_id)

    def all(self) -> list[TrackedProcess]:
        return list(self._processes.values())

    async def start(
        self,
        command: str,
        *,
        session_id: int | None,
        generation: int,
        cwd: str | None = None,
        notify_on_complete: bool = False,
        watch_patterns: tuple[str, ...] = (),
        tool_call_id: str | None = None,
    ) -> TrackedProcess:
        process_id = f"proc_{secrets.token_hex(6)}"
        log_path = private_file(self._log_dir / f"{process_id}.log")
        status_path = self._log_dir / f"{process_id}.status"
        private_file(status_path.with_name(f"{status_path.name}.pid"))  # empty reads as absent
        record = JobRecord(
            id=process_id,
            session_id=session_id,
            generation=generation,
            command=command,
            cwd=cwd,
            pid=None,
            pid_started_at=None,
            notify_on_complete=notify_on_complete,
            watch_patterns=watch_patterns,
            log_path=str(log_path),
            state=ProcessState.RUNNING,
            exit_code=None,
            end_reason=None,
            consumed=False,
            started_at=self._clock.now(),
            tool_call_id=tool_call_id,
            host=self.host,
            node=self.node,
        )
        tracked = self._track(record, detached=False)
        # Durable before it runs: a crash at any later point leaves a job the store knows.
        await self._store.processes.save(record)
        try:
            child = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", WRAPPER, "switchboard-job", command, str(log_path),
                str(status_path),
                cwd=cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        except OSError:
            # The tool call fails with the error: its ending is consumed, so no notice turn
            # tells the agent a second time.
            tracked.record = replace(tracked.record, consumed=True)
            await self._finish(tracked, ProcessState.LOST, None, "could not be started")
            raise
        try:
            pid_started_at: float | None = psutil.Process(child.pid).create_time()
        except psutil.NoSuchProcess:
            pid_started_at = None
        tracked.record = replace(tracked.record, pid=child.pid, pid_started_at=pid_started_at)
        await self._store.processes.save(tracked.record)
        tracked._task = asyncio.get_running_loop().create_task(
            self._watch(tracked, child.wait), name=f"watch-{process_id}"
        )
        return tracked

    async def consume(self, process_id: str) -> None:
        """Someone (wait that saw the exit, a log read to the end, kill) took the result:
        no completion notice is ever sent for it, in any mode."""
        tracked = self._processes.get(process_id)
        if tracked is not None and not tracked.record.consumed:
            tracked.record = replace(tracked.record, consumed=True)
            await self._store.processes.save(tracked.record)

    async def claim(self, process_id: str, generation: int) -> None:
        """A later turn of the owning session looked at this job: it owns its events now
        (they are stamped with its generation, so they are not stale for it)."""
        tracked = self._processes.get(process_id)
        if tracked is not None and generation > tracked.record.generation:
            tracked.record = replace(tracked.record, generation=generation)
            await self._store.processes.save(tracked.record)

    def handed_over(self, process_id: str, generation: int, consumed: bool) -> None:
        """A notice turn took the job over (its start transaction already wrote this)."""
        tracked = self._processes.get(process_id)
        if tracked is not None:
            tracked.record = replace(
                tracked.record,
                generation=max(generation, tracked.record.generation),
                consumed=tracked.record.consumed or consumed,
            )

    async def kill(
        self, process_id: str, grace: float = 2.0, *, consume: bool = False
    ) -> KillResult:
        """Kill the whole tree. Reports killed only when nothing of it survived.

        consume=True (the agent's own kill): the completion is consumed BEFORE the signal,
        so an exit noticed by the reader meanwhile cannot slip a completion notice out."""
        tracked = self._processes.get(process_id)
        if tracked is None or tracked.state != ProcessState.RUNNING:
            return KillResult(True, (), False)
        record = tracked.record
        assert record.pid is not None
        already = record.consumed
        if consume:
            tracked.record = replace(record, consumed=True)
        result = await asyncio.to_thread(kill_tree, record.pid, record.pid_started_at, grace)
        if result.killed:
            await self._finish(tracked, ProcessState.KILLED, None, "killed")
        elif consume and not already and tracked.state == ProcessState.RUNNING:
            # It survived: the agent was told so, and may still want to hear when it ends.
            tracked.record = replace(tracked.record, consumed=False)
        return result

    async def kill_all(self, grace: float = 2.0) -> list[KillResult]:
        running = [p.id for p in self._processes.values() if p.state == ProcessState.RUNNING]
        return list(await asyncio.gather(*(self.kill(pid, grace) for pid in running)))

    async def adopt_jobs(self, only: Collection[int] | None = None) -> list[TrackedProcess]:
        """After a restart: take back the jobs the previous run left running. On a node,
        `only` those of the sessions it took over (another node's jobs are its own).

        A job recorded on another host is never looked up by its PID here (that PID means
        another process on this machine, if any) and never signalled: had its node recorded
        its ending, it would not be running in the store, so it is closed as lost with the
        reason, and the tool call that started it stays of unknown effect (held)."""
        adopted = []
        for record in await self._store.processes.live(only):
            if record.id in self._processes:
                continue
            if self._elsewhere(record):
                tracked = self._track(record, detached=True)
                await self._finish(tracked, ProcessState.LOST, None, _gone_elsewhere(record))
                continue
            if record.pid is None:
                # Spawned, but the gateway died before the PID was committed (or it never
                # started): the wrapper's PID file says which, if any, it is.
                found = await asyncio.to_thread(_wrapper_of, record.log_path)
                if found is not None:
                    record = replace(record, pid=found[0], pid_started_at=found[1])
                    await self._store.processes.save(record)
            tracked = self._track(record, detached=True)
            alive = record.pid is not None and tree_of(record.pid, record.pid_started_at)
            if alive:
                assert record.pid is not None
                # What it wrote before the restart was matched (and told) by the run that
                # watched it then: read past it without matching.
                await self._read_log(tracked, watch=False)
                tracked._task = asyncio.get_running_loop().create_task(
                    self._watch(tracked, partial(_pidfd_exit, record.pid)),
                    name=f"watch-{record.id}",
                )
                adopted.append(tracked)
                continue
            await self._read_log(tracked)
            code = _read_status(record.log_path)
            if code is None:
                await self._finish(
                    tracked, ProcessState.LOST, None, "gone while the gateway was down"
                )
            else:
                await self._finish(tracked, ProcessState.EXITED, code, "exited")
        return adopted

    async def log_tail(self, record: JobRecord, chars: int = 4000) -> str:
        """The end of a job's log file (for a job this run never tracked)."""
        tracked = self._processes.get(record.id)
        if tracked is not None:
            return tracked.output.text()[-chars:]
        if record.log_path is None or self._elsewhere(record):
            return ""  # (another machine's log path names nothing of that job here)
        return await asyncio.to_thread(_read_tail, record.log_path, chars)

    def _elsewhere(self, record: JobRecord) -> bool:
        """A node's job recorded on another machine (its PID and paths mean nothing here)."""
        return self.node is not None and record.host is not None and record.host != self.host

    async def close(self) -> None:
        """Stop watching (the jobs themselves keep running: they may be re-adopted)."""
        tasks = [p._task for p in self._processes.values() if p._task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch(
        self, tracked: TrackedProcess, exited: Callable[[], Awaitable[object]]
    ) -> None:
        # A factory, not a coroutine: a watch cancelled before it starts leaves nothing behind.
        waiter = asyncio.ensure_future(exited())
        every = TAIL_EVERY
        try:
            while not waiter.done():
                before = tracked._offset
                await self._read_log(tracked, watch=True)
                every = TAIL_EVERY if tracked._offset > before else min(every * 2, TAIL_IDLE)
                await asyncio.wait({waiter}, timeout=every)
            # What it wrote before it exited still counts for its watch patterns; nothing is
            # read after the ending is recorded, so late output never matches.
            await self._read_log(tracked, watch=True)
            last = tracked.output.close()  # a last line without a newline still counts
            if last and tracked.state == ProcessState.RUNNING:
                await self._match(tracked, last)
            if tracked.state != ProcessState.RUNNING:
                return  # killed meanwhile: already recorded
            code = _read_status(tracked.record.log_path)
            if code is None:
                await self._finish(tracked, ProcessState.KILLED, None, "ended by a signal")
            else:
                await self._finish(tracked, ProcessState.EXITED, code, "exited")
        finally:
            waiter.cancel()

    async def _read_log(self, tracked: TrackedProcess, *, watch: bool = False) -> None:
        """Read new output, matching watch patterns when asked."""
        path = tracked.record.log_path
        if path is None:
            return
        while data := await asyncio.to_thread(_read_from, path, tracked._offset):
            tracked._offset += len(data)
            lines = tracked.output.feed(data)
            # Only while it runs: once its ending is recorded, nothing it wrote is news.
            if watch and lines and tracked.state == ProcessState.RUNNING:
                await self._match(tracked, lines)

    async def _match(self, tracked: TrackedProcess, lines: list[str]) -> None:
        if tracked.watcher is not None and tracked.watcher.active:
            for outcome in tracked.watcher.feed(lines, self._clock.monotonic()):
                await self._watched(tracked, outcome)

    async def _watched(self, tracked: TrackedProcess, outcome: WatchOutcome) -> None:
        if tracked.state != ProcessState.RUNNING:
            return  # ended while this chunk was read: the completion (if any) covers it
        if isinstance(outcome, WatchDisabled) and not tracked.record.notify_on_complete:
            # Watching stopped: the job reports its end instead (persisted: it survives a
            # restart).
            tracked.record = replace(tracked.record, notify_on_complete=True)
            await self._store.processes.save(tracked.record)
        for listener in self._watch_listeners:
            listener(tracked, outcome)

    async def _finish(
        self, tracked: TrackedProcess, state: ProcessState, code: int | None, reason: str
    ) -> None:
        if tracked.state != ProcessState.RUNNING:
            return  # exactly one ending per process, whoever notices first
        tracked.record = replace(
            tracked.record,
            state=state,
            exit_code=code,
            end_reason=reason,
            ended_at=self._clock.now(),
        )
        # Durable first: whoever wakes on `finished` must find the ending on disk too.
        await self._store.processes.save(tracked.record)
        tracked.finished.set()
        for listener in self._listeners:
            listener(tracked)


def _gone_elsewhere(record: JobRecord) -> str:
    """Why a job of another machine is closed as lost by the node that took its session."""
    under = f" (node {record.node})" if record.node else ""
    return f"ran on host {record.host}{under}, which is gone; its outcome cannot be known here"


def _read_from(path: str, offset: int) -> bytes:
    """Up to READ_CHUNK new bytes of a log (b"" when there are none, or no file yet)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read(READ_CHUNK)
    except FileNotFoundError:
        return b""


def _read_tail(path: str, chars: int) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - chars * 4))
            return handle.read().decode("utf-8", errors="replace")[-chars:]
    except OSError:
        return ""


def _read_status(log_path: str | None) -> int | None:
    if log_path is None:
        return None
    status = Path(log_path).with_suffix(".status")
    try:
        return int(status.read_text().strip())
    except (OSError, ValueError):
        return None


def _wrapper_of(log_path: str | None) -> tuple[int, float] | None:
    """The live wrapper of a job whose PID was never committed: (pid, start time), or None.

    Its PID file is written first thing by the wrapper; the process behind that PID must be
    the wrapper of this very job (its command line names the job's log), so a PID reused by
    something else is never adopted."""
    if log_path is None:
        return None
    pid_file = Path(log_path).with_suffix(".status.pid")
    try:
        pid = int(pid_file.read_text().strip())
        process = psutil.Process(pid)
        if log_path not in process.cmdline():
            return None
        return pid, process.create_time()
    except (OSError, ValueError, psutil.Error):
        return None


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def _pidfd_exit(pid: int) -> None:
    """Wait for a process that is not our child to exit (Linux pidfd; no polling)."""
    loop = asyncio.get_running_loop()
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except OSError as error:  # no pidfd here (old kernel, a seccomp profile): poll instead
        log.info("pidfd_open(%d) failed (%s); polling for its exit", pid, error)
        # A process that is not our child has no event to wait on without a pidfd.
        while _running(pid):  # noqa: ASYNC110
            await asyncio.sleep(1.0)
        return
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)
