"""Benchmark: messages/s of one gateway node, then of two, on one PostgreSQL.

    python bench/cluster_intake.py                      # 200 sessions, 8 s per phase
    python bench/cluster_intake.py --sessions 400 --seconds 15

Prints one JSON object. Each node is its own process (as `switchboard run` would be): a real
Gateway on the PostgreSQL backend with the loopback adapter, which takes intake on every
node (as webhooks do), and the closed-loop clients of bench/intake.py's saturation phase.
The sessions are split between the nodes: each node's clients are its own users, so each
node takes its sessions' leases with their first turns and keeps them. Both phases run in
the same process on the same throwaway server (initdb and pg_ctl as the tests use them,
durability off as there), each on a fresh database:

  one_node   every session on one node.
  two_nodes  the same sessions, half on each of two nodes, started together: messages_per_s
             is the two nodes' sum over the same window (each node's own figures beside it).
  scaling    two_nodes / one_node.

On a machine with fewer cores than nodes plus the server, the nodes share the cores: the
figure says what a second node adds on this machine, not on two machines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.intake import Bench, closed_loop
from bench.measure import Costs, writer_delta
from tests.support.postgres_server import start_server

DSN_VARIABLE = "BENCH_CLUSTER_DSN"  # the DSN reaches the nodes by the environment, not argv
READY, GO = "READY", "GO"
START_WITHIN_S = 120.0


async def node(first: int, sessions: int, seconds: float, node_id: str) -> dict[str, Any]:
    """One node: started and warmed up, then (once told to go) its clients for `seconds`."""
    dsn = os.environ[DSN_VARIABLE]
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as directory:
        bench = Bench(Path(directory), sessions, dsn, first=first, node_id=node_id)
        await bench.start()
        print(READY, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        before = bench.stats()
        with Costs() as costs:
            loop = await closed_loop(bench, seconds)
        stats = writer_delta(before, bench.stats(), costs.wall_seconds)
        await bench.stop()
    return {
        "node": node_id,
        **loop.report(),
        "writer": stats,
        "cpu_cores": costs.report()["cpu_cores"],
    }


def run_nodes(dsn: str, sessions: int, seconds: float, count: int) -> dict[str, Any]:
    """`count` node processes on one database, sessions split evenly, started together."""
    share = sessions // count
    env = {**os.environ, DSN_VARIABLE: dsn}
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--node",
                f"node-{n + 1}",
                "--first",
                str(n * share),
                "--sessions",
                str(share),
                "--seconds",
                str(seconds),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for n in range(count)
    ]
    try:
        deadline = time.monotonic() + START_WITHIN_S
        for process in processes:
            assert process.stdout is not None
            line = process.stdout.readline().strip()
            if line != READY or time.monotonic() > deadline:
                raise RuntimeError(f"a node did not start (said {line!r})")
        for process in processes:  # every node warm: all start their clients at once
            assert process.stdin is not None
            process.stdin.write(GO + "\n")
            process.stdin.flush()
        reports = []
        for process in processes:
            out, _ = process.communicate(timeout=seconds + START_WITHIN_S)
            reports.append(json.loads(out))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    return {
        "messages_per_s": round(sum(r["messages_per_s"] for r in reports), 1),
        "lost": sum(r["lost"] for r in reports),
        "nodes": reports,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each phase")
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--node", help=argparse.SUPPRESS)  # run as one node (the phases' own)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.node is not None:
        found = asyncio.run(node(args.first, args.sessions, args.seconds, args.node))
        print(json.dumps(found))
        return

    server = start_server()
    if server is None:
        print(json.dumps({"bench": "cluster_intake", "skipped": "PostgreSQL is not installed"}))
        return
    try:
        one = run_nodes(server.new_database(), args.sessions, args.seconds, 1)
        two = run_nodes(server.new_database(), args.sessions, args.seconds, 2)
    finally:
        server.stop()
    result = {
        "bench": "cluster_intake",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "sessions": args.sessions,
        "seconds": args.seconds,
        "one_node": one,
        "two_nodes": two,
        "scaling": round(two["messages_per_s"] / one["messages_per_s"], 2)
        if one["messages_per_s"]
        else None,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
