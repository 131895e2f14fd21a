"""Benchmark: from exec of `switchboard run` to its first getUpdates, empty store and large store.

    python bench/restart.py                        # empty store and 100,000 sessions, 5 runs each
    python bench/restart.py --runs 3 --sessions 20000

Prints one JSON object. No target (issue 16): the figure is measured, and where the time goes.

The fake Telegram Bot API (tests/support/fake_bot_api.py) runs in this process on 127.0.0.1;
each run execs `switchboard run` (as `python -m console.cli run` from this checkout; the
example config pointed at the fake with SWITCHBOARD_* variables, the scripted agent) and
times exec until the fake received the first getUpdates, then stops it with SIGTERM. The
median of --runs is reported per store. `imports` is one more run of the same command under
`python -X importtime` (not in the median: the option slows imports down), the seconds spent
importing summed by top-level package, and `import_share` the share of that run's
exec-to-first-getUpdates spent importing packages that are not this project's.

The large store is bench/memory.py's: --sessions idle sessions, 4 transcript rows each.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.memory import build_store
from tests.support.fake_bot_api import FakeBotAPI

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "deploy" / "switchboard.example.toml"
TOKEN = "42:TEST-TOKEN"
FIRST_POLL_WITHIN_S = 60.0
OWN_PACKAGES = {"gateway_core", "console"}


def environment(fake: FakeBotAPI, state_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "SWITCHBOARD_CONFIG": str(CONFIG),
            "SWITCHBOARD_GATEWAY_STATE_DIR": str(state_dir),
            "SWITCHBOARD_TELEGRAM_API_BASE": fake.base_url,
            "SWITCHBOARD_TELEGRAM_TOKEN": TOKEN,
            "SWITCHBOARD_TELEGRAM_ALLOWED_USERS": "7001",
            "SWITCHBOARD_AGENT_KIND": "scripted",
        }
    )
    return env


def switchboard() -> list[str]:
    """The entry point's module, run from this checkout (so it measures this checkout's code
    even where another one is installed)."""
    return [sys.executable, "-m", "console.cli"]


async def one_run(
    fake: FakeBotAPI, state_dir: Path, python_options: list[str] | None = None
) -> tuple[float, str]:
    """Seconds from exec to the first getUpdates; and the run's stderr."""
    before = len(fake.calls("getUpdates"))
    command = switchboard()
    if python_options is not None:
        command = [command[0], *python_options, *command[1:]]
    log = state_dir.parent / f"{state_dir.name}.stderr"
    with log.open("w") as stderr:
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            *command,
            "run",
            env=environment(fake, state_dir),
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            await fake.wait_until(
                lambda: len(fake.calls("getUpdates")) > before, timeout=FIRST_POLL_WITHIN_S
            )
            first = fake.calls("getUpdates")[before].at - started
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            await process.wait()
    return first, log.read_text()


def import_seconds(importtime_log: str) -> dict[str, float]:
    """Seconds of import (each module's own time) summed by top-level package."""
    by_package: collections.Counter[str] = collections.Counter()
    for line in importtime_log.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        own, _, name = line[len("import time:") :].split("|")
        by_package[name.strip().split(".")[0]] += int(own)
    return {name: round(us / 1e6, 3) for name, us in by_package.most_common()}


async def measure(runs: int, large: Path, directory: Path) -> dict[str, Any]:
    """large: a state directory holding the large store, copied afresh for each run."""
    async with FakeBotAPI(token=TOKEN) as fake:
        result: dict[str, Any] = {}
        for name in ("empty", "large"):
            timings = []
            for index in range(runs):
                state = directory / f"{name}-{index}"
                if name == "large":  # each run boots the store as the template left it
                    shutil.copytree(large, state)
                seconds, _ = await one_run(fake, state)
                timings.append(seconds)
            result[name] = {
                "median_s": round(statistics.median(timings), 3),
                "min_s": round(min(timings), 3),
                "max_s": round(max(timings), 3),
                "runs_s": [round(t, 3) for t in timings],
            }
        seconds, stderr = await one_run(fake, directory / "importtime", ["-X", "importtime"])
        imports = import_seconds(stderr)
        result["imports"] = {
            "first_poll_s_under_importtime": round(seconds, 3),
            "total_s": round(sum(imports.values()), 3),
            "by_package_s": dict(list(imports.items())[:12]),
        }
        dependencies = sum(s for name, s in imports.items() if name not in OWN_PACKAGES)
        result["imports"]["dependencies_s"] = round(dependencies, 3)
        # Both from the same run under -X importtime, which slows imports and so the run.
        result["import_share"] = round(dependencies / seconds, 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-restart-") as directory:
        large = Path(directory) / "large-template"
        large.mkdir(mode=0o700)
        started = time.perf_counter()
        build_store(large / "switchboard.db", args.sessions)
        build_s = time.perf_counter() - started
        measured = asyncio.run(measure(args.runs, large, Path(directory)))
    result = {
        "bench": "restart",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "runs": args.runs,
        "sessions": args.sessions,
        "build_s": round(build_s, 1),
        **measured,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
