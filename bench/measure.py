"""Measurement helpers shared by the benchmarks: percentiles, writer stats, CPU and GC cost."""

from __future__ import annotations

import argparse
import gc
import math
import os
import threading
import time
from typing import Any

from gateway_core.gc_tuning import tune_for_long_running_server
from gateway_core.store.writer import WriterStats


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not values:
        return math.nan
    return values[max(0, min(len(values) - 1, math.ceil(q * len(values)) - 1))]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def latency_summary(latencies: list[float]) -> dict[str, float | None]:
    latencies.sort()
    return {
        "p50_ms": ms(percentile(latencies, 0.50)),
        "p95_ms": ms(percentile(latencies, 0.95)),
        "p99_ms": ms(percentile(latencies, 0.99)),
        "max_ms": ms(latencies[-1]) if latencies else None,
    }


def writer_delta(
    before: WriterStats, after: WriterStats, wall_seconds: float | None = None
) -> dict[str, float | int]:
    """The writer's group commits over a window; with the window's length, the share of it
    the writer's thread spent in transactions (`busy_share`, 1.0: saturated)."""
    batches = after.batches - before.batches
    jobs = after.jobs - before.jobs
    delta: dict[str, float | int] = {
        "batches": batches,
        "jobs": jobs,
        "jobs_per_batch": round(jobs / batches, 2) if batches else 0,
        "largest_batch_since_open": after.largest_batch,
    }
    if wall_seconds:
        delta["busy_share"] = round((after.busy_seconds - before.busy_seconds) / wall_seconds, 3)
    return delta


def process_cpu_seconds(pid: int) -> float:
    """CPU time so far of another process (the store's writer process), from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Costs:
    """Process CPU time and cyclic-GC time over a measured window (where the time goes).

    helper: the pid of a process working for this one (the store's writer process), whose
    CPU counts in `cpu_seconds` and appears in `thread_seconds` as WRITE_PROCESS."""

    WRITE_PROCESS = "write-process"

    def __init__(self, helper: int | None = None) -> None:
        self._helper = helper
        self._helper_cpu = 0.0
        self.collections = [0, 0, 0]
        self.gc_seconds = [0.0, 0.0, 0.0]
        self.gc_longest = 0.0
        self._gc_started = 0.0
        self._wall = self._cpu = 0.0
        self._threads: dict[str, float] = {}

    def __enter__(self) -> Costs:
        self.begin()
        return self

    def __exit__(self, *exc: object) -> None:
        self.end()

    def begin(self) -> None:
        gc.callbacks.append(self._on_gc)
        self._threads = thread_cpu_seconds()
        if self._helper is not None:
            self._helper_cpu = process_cpu_seconds(self._helper)
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def end(self) -> None:
        self._wall = time.perf_counter() - self._wall
        self._cpu = time.process_time() - self._cpu
        started, self._threads = self._threads, thread_cpu_seconds()
        for name, seconds in started.items():
            self._threads[name] = self._threads.get(name, seconds) - seconds
        if self._helper is not None:
            helper = process_cpu_seconds(self._helper) - self._helper_cpu
            self._threads[self.WRITE_PROCESS] = helper
            self._cpu += helper
        gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        took = time.perf_counter() - self._gc_started
        generation = info["generation"]
        self.collections[generation] += 1
        self.gc_seconds[generation] += took
        self.gc_longest = max(self.gc_longest, took)

    @property
    def wall_seconds(self) -> float:
        """The window's length, once it ended."""
        return self._wall

    @property
    def cpu_seconds(self) -> float:
        """Process CPU time (every thread, and the helper process's) over the window, once
        it ended."""
        return self._cpu

    @property
    def thread_seconds(self) -> dict[str, float]:
        """CPU time over the window by thread name (threads alive at both ends; empty where
        /proc is missing), once it ended."""
        return self._threads

    def report(self) -> dict[str, Any]:
        return {
            "cpu_cores": round(self._cpu / self._wall, 2) if self._wall else None,
            "gc_share_of_wall": round(sum(self.gc_seconds) / self._wall, 3) if self._wall else None,
            "gc_collections": self.collections,
            "gc_seconds": [round(s, 2) for s in self.gc_seconds],
            "gc_longest_ms": ms(self.gc_longest),
        }


def add_gc_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--default-gc",
        action="store_true",
        help="keep CPython's default GC thresholds (the product's entry points tune them)",
    )


def apply_gc_option(args: argparse.Namespace) -> str:
    """Tune GC as `switchboard` does for a long-running gateway, unless --default-gc."""
    if args.default_gc:
        return "default"
    tune_for_long_running_server()
    return "tuned (gateway_core.gc_tuning)"


def thread_cpu_seconds() -> dict[str, float]:
    """CPU time so far of each live Python thread, by name, from /proc (Linux): which of the
    gateway's threads (the event loop's, the store writer's) a benchmark's CPU went to."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = {}
    for thread in threading.enumerate():
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat") as handle:
                fields = handle.read().rpartition(")")[2].split()
        except OSError:
            continue
        # utime and stime, fields 14 and 15 of stat(5); the split starts at field 3.
        found[thread.name] = (int(fields[11]) + int(fields[12])) / ticks
    return found
