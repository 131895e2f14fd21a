"""Benchmark: a long crash storm against the real `switchboard run`.

    python bench/crash_storm.py                    # 300 kills, 0.3-2.5 s apart, seed 0
    python bench/crash_storm.py --kills 30 --seed 3

The same storm as tests/test_crash_storm.py (tests/support/crash_storm.py explains it): four
Telegram conversations (quick echoes, long turns whose resume works again, a foreground
terminal command or three steps, one user who writes once and waits) talk to a real gateway
process through the loopback fake Bot API while it is SIGKILLed at seeded random moments and
started again; afterwards an operator approves every held candidate over the control socket
and resends the replies a kill caught mid-send that never reached the chat.

Prints one JSON object: messages sent, answered exactly once, lost, duplicated, phantom (said
without being asked), held (approved by the operator), the held notices users got, the
replies of unknown outcome (and how many of those had in fact arrived), resumed answers, and
the wall time. Expected: 0 lost, 0 duplicated, 0 phantom.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.crash_storm import StormPlan, run_storm  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-gap", type=float, default=0.3, help="seconds, READY to kill")
    parser.add_argument("--max-gap", type=float, default=2.5)
    return parser.parse_args()


async def main(args: argparse.Namespace) -> dict[str, object]:
    plan = StormPlan(
        kills=args.kills, seed=args.seed, min_gap=args.min_gap, max_gap=args.max_gap,
        settle_within=120.0,
    )  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="switchboard-storm-"))
    report = await run_storm(tmp, plan)
    if report.problems:
        kept: str | None = str(tmp)  # the gateway's log and store, to look into
    else:
        shutil.rmtree(tmp, ignore_errors=True)
        kept = None
    return {
        "benchmark": "crash_storm",
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "plan": {"kills": args.kills, "seed": args.seed, "gap_s": [args.min_gap, args.max_gap]},
        **report.figures(),
        "problems": report.problems[:20],
        "kept": kept,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(parse_args())), indent=2))
