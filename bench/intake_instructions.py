"""Benchmark: machine instructions per message on the whole intake path, which load cannot move.

    python bench/intake_instructions.py                 # 100 sessions, 10 messages minus 2 each
    python bench/intake_instructions.py --sessions 50   # quicker

Prints one JSON object. The machine this project runs on is shared and has 2 cores, so a
throughput figure moves by more than most changes do; an instruction count does not. This runs
bench/intake.py's gateway (loopback adapter, scripted agent, notifier off, on the loop
`switchboard run` runs on) for a fixed workload: every session says its messages one after
another, each after the previous reply was sent (closed loop, all sessions at once). It does
so twice under valgrind's callgrind (a few minutes each): `--messages` per session and
`--baseline` per session. The difference of the two totals over the difference in messages
is what one message costs, the process's start-up, imports and warm-up cancelled out. Every
write runs on the store writer's thread here (`store.write_process = false`), so the count is
all of a message's work in one process, comparable from one change to the next.

Needs valgrind (`apt-get install valgrind`); without it, says so and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.intake import Bench
from gateway_core.event_loop import chosen_loop, run_server

_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


async def workload(sessions: int, messages: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as directory:
        # Every write on the writer's thread: callgrind counts this process only, and the
        # store's writer process (store/write_process.py) would take its share out of it.
        bench = Bench(Path(directory), sessions, write_process=False)
        await bench.start()

        async def client(index: int) -> None:
            user = bench.users[index]
            for n in range(messages):
                token = f"s{index}-{n}"
                waiter = bench.adapter.expect(token)
                await user.say(token)
                await waiter

        await asyncio.gather(*(client(i) for i in range(sessions)))
        await bench.stop()


def instructions(sessions: int, messages: int) -> int:
    """Instructions callgrind counted for one run of the workload, start to exit."""
    command = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, __file__, "--child", "--sessions", str(sessions),
        "--messages", str(messages),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    found = _COLLECTED.search(done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output: {done.stderr[-500:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--messages", type=int, default=10, help="per session, measured run")
    parser.add_argument("--baseline", type=int, default=2, help="per session, baseline run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_server(workload(args.sessions, args.messages), os.environ)
        return
    result: dict[str, object] = {
        "bench": "intake_instructions",
        "python": sys.version.split()[0],
        "event_loop": str(chosen_loop(os.environ)),
        "sessions": args.sessions,
        "messages_per_session": [args.baseline, args.messages],
    }
    if shutil.which("valgrind") is None:
        result["skipped"] = "valgrind is not installed"
    else:
        measured = instructions(args.sessions, args.messages)
        baseline = instructions(args.sessions, args.baseline)
        extra = args.sessions * (args.messages - args.baseline)
        result["instructions"] = [baseline, measured]
        result["instructions_per_message"] = round((measured - baseline) / extra)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
