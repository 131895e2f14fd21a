"""A real gateway in its own process, for crash tests.

    python -m tests.support.crash_gateway --state-dir DIR --journal FILE --users N --messages M

Starts a gateway (system clock, scripted agent, loopback adapter journaling to FILE), prints
READY once started, then has N loopback users ("u0".."uN-1") each send M messages, one at a
time, waiting for each reply before the next, so turns are always in flight. It then idles
until killed. With --no-traffic it only starts and idles, and prints IDLE once everything the
boot queued (resumes, the inbox backlog, owed replies) is done. --say TEXT: user "u0" sends TEXT
once, and SAID is printed when its reply arrived (--no-wait: as soon as it is stored).
--agent-url URL: the openai agent against that chat-completions server instead of the
scripted one. --recovery KEY=VALUE sets a [recovery] setting (repeatable). --max-length N: the
loopback platform's message limit (replies are split to fit). --fail-send N: the Nth send fails
with a retryable error (a 502). SIGTERM or SIGINT drains and stops the gateway and exits 0;
SIGKILL is the crash under test.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
from pathlib import Path

from gateway_core.adapters.base import Capabilities
from gateway_core.adapters.loopback import LoopbackAdapter, LoopbackUser
from gateway_core.agents.factory import agent_from_config
from gateway_core.clock import SystemClock
from gateway_core.gateway import Gateway
from tests.support.harness import make_config, ready_until_signalled

THINKS = ("0.05", "0.1", "0.2", "0.3")


async def chat(user: LoopbackUser, messages: int, rng: random.Random) -> None:
    """Quick echoes and short thinks, each reply awaited before the next message."""
    for i in range(messages):
        text = f"msg {i}" if rng.random() < 0.5 else f"think {rng.choice(THINKS)}"
        await user.say(text)
        await user.wait_for(i + 1)  # one reply per message: the notifier is off


async def main(args: argparse.Namespace) -> None:
    agent_section: dict[str, object] = {}
    if args.agent_url:
        agent_section = {"kind": "openai", "base_url": args.agent_url, "stream": False}
    recovery: dict[str, object] = {}
    for item in args.recovery:
        key, _, value = item.partition("=")
        recovery[key] = float(value) if "." in value else int(value)
    config = make_config(
        args.state_dir, notifier={"interval": 0}, agent=agent_section, recovery=recovery
    )
    adapter = LoopbackAdapter(
        journal_path=args.journal, capabilities=Capabilities(max_length=args.max_length)
    )
    if args.fail_send is not None:
        adapter.fail_next(1, after=args.fail_send - 1, reason="HTTP 502 Bad Gateway")
    gateway = Gateway(
        config, agent=agent_from_config(config), adapters=[adapter], clock=SystemClock()
    )
    await gateway.start()

    stop = ready_until_signalled()
    if args.say is not None:
        speaker = adapter.user("u0")
        await speaker.say(args.say)
        if not args.no_wait:
            await speaker.wait_for(1, within=30)
        print("SAID", flush=True)

    if args.no_traffic:
        # The parent waits for this line instead of guessing from idle polls of the store.
        idle = asyncio.ensure_future(gateway.wait_idle())
        idle.add_done_callback(lambda done: done.cancelled() or print("IDLE", flush=True))
    traffic = None
    if not args.no_traffic:
        chats = [
            chat(adapter.user(f"u{n}"), args.messages, random.Random(args.seed * 1000 + n))
            for n in range(args.users)
        ]
        traffic = asyncio.gather(*chats)
        traffic.add_done_callback(_report_failure)
    await stop.wait()
    if traffic is not None:
        traffic.cancel()
        await asyncio.gather(traffic, return_exceptions=True)
    await gateway.stop()


def _report_failure(traffic: asyncio.Future[list[None]]) -> None:
    if not traffic.cancelled() and traffic.exception() is not None:
        logging.error("traffic stopped", exc_info=traffic.exception())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--journal", type=Path, required=True)
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-traffic", action="store_true")
    parser.add_argument("--say", default=None)
    parser.add_argument("--no-wait", action="store_true")
    parser.add_argument("--agent-url", default=None)
    parser.add_argument("--recovery", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--max-length", type=int, default=Capabilities().max_length)
    parser.add_argument("--fail-send", type=int, default=None)
    return parser.parse_args()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(main(parse_args()))
