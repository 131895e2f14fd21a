"""Killing a whole process tree, and saying so only when it is really gone.

The tree is snapshotted first (a descendant that called setsid escapes killpg but not the
snapshot), the group gets SIGTERM, then after `grace` everything still alive gets SIGKILL.
Before the SIGKILL and before the result, every process of the tree still alive is asked for
its children again: a job may start processes while it is being killed (a SIGTERM trap that
forks), and one of those that left the group would otherwise outlive a kill reported done.
Blocking psutil calls: run this in a thread.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass

import psutil


@dataclass(frozen=True, slots=True)
class KillResult:
    killed: bool
    survivors: tuple[int, ...]
    escalated: bool  # SIGKILL was needed


def tree_of(pid: int, started_at: float | None) -> list[psutil.Process]:
    """The process and its descendants, or [] if pid is gone or now belongs to someone else."""
    try:
        leader = psutil.Process(pid)
        if started_at is not None and abs(leader.create_time() - started_at) > 0.01:
            return []  # the PID was reused: never signal a stranger
        return [leader, *leader.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return []


def kill_tree(pid: int, started_at: float | None, grace: float = 2.0) -> KillResult:
    tree = tree_of(pid, started_at)
    if not tree:
        return KillResult(True, (), False)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    for process in tree[1:]:  # descendants that left the group
        _signal(process, signal.SIGTERM)
    alive = _with_new_children(_wait_gone(tree, grace))
    escalated = bool(alive)
    for _ in range(KILL_ROUNDS):
        if not alive:
            break
        if _group_still_ours(pid, alive):  # members whose parent died meanwhile
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        for process in alive:
            _signal(process, signal.SIGKILL)
        alive = _with_new_children(_wait_gone(alive, grace))
    survivors = tuple(p.pid for p in alive)
    return KillResult(not survivors, survivors, escalated)


# SIGKILL rounds, each after the tree was listed again: a process cannot fork once SIGKILL is
# pending, so a second round only meets children forked before the first one landed.
KILL_ROUNDS = 3


def _group_still_ours(group: int, alive: list[psutil.Process]) -> bool:
    """A process of the tree is still in the job's group, so the group id cannot have been
    given to anyone else (the kernel never reuses an id a live group holds)."""
    for process in alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(process.pid) == group:
                return True
    return False


def _with_new_children(alive: list[psutil.Process]) -> list[psutil.Process]:
    """Those still alive and every descendant they have now (started since the last look)."""
    found = {p.pid: p for p in alive}
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            for child in process.children(recursive=True):
                found.setdefault(child.pid, child)
    return [p for p in found.values() if _really_alive(p)]


def _wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Those still alive after `timeout`. Never reaps: the leader is asyncio's child, and
    reaping it here (as psutil.wait_procs does) would rob asyncio of its exit status. A zombie
    counts as gone."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in processes if _really_alive(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.02)  # in a worker thread: there is no event for "a process died"


def _signal(process: psutil.Process, signum: int) -> None:
    with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        process.send_signal(signum)


def _really_alive(process: psutil.Process) -> bool:
    """Running and not a zombie (a zombie is dead; only its parent can reap it)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
