"""A real gateway on the real Telegram adapter in its own process, for crash tests.

    SWITCHBOARD_TELEGRAM_TOKEN=42:TEST-TOKEN \\
        python -m tests.support.telegram_gateway --state-dir DIR --api-base URL --allowed 7

Builds the config with the harness (scripted agent, notifier off unless --notifier-interval N
shows "still working" every N s, telegram.api_base pointed at URL, the given allowed users),
the adapter with the config factory (token from the environment), starts the gateway on the
system clock and prints READY once started. SIGTERM or SIGINT drains and stops the gateway and
exits 0; SIGKILL is the crash under test. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path

from gateway_core.adapters.factory import telegram_from_config
from gateway_core.agents.scripted import ScriptedAgent
from gateway_core.clock import SystemClock
from gateway_core.gateway import Gateway
from tests.support.harness import make_config, ready_until_signalled


async def main(args: argparse.Namespace) -> None:
    telegram: dict[str, object] = {"api_base": args.api_base, "allowed_users": list(args.allowed)}
    if args.poll_timeout is not None:
        # Tests want short polls so that "two more polls" is a short wait.
        telegram["poll_timeout"] = args.poll_timeout
    notifier = {"interval": args.notifier_interval}
    config = make_config(args.state_dir, telegram=telegram, notifier=notifier)
    clock = SystemClock()
    adapter = telegram_from_config(config, os.environ, clock)
    gateway = Gateway(config, agent=ScriptedAgent(), adapters=[adapter], clock=clock)
    await gateway.start()

    stop = ready_until_signalled()
    await stop.wait()
    logging.getLogger(__name__).info("signal received: draining")
    await gateway.stop()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--api-base", required=True, help="Bot API base URL (the fake's)")
    parser.add_argument(
        "--allowed", type=int, action="append", required=True, help="an allowed user id"
    )
    parser.add_argument("--poll-timeout", type=int, default=None, help="long-poll seconds")
    parser.add_argument(
        "--notifier-interval", type=float, default=0.0, help='"still working" every N s (0: off)'
    )
    return parser.parse_args()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(main(parse_args()))
