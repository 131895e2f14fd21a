"""The `switchboard` command line.

Exit codes (DESIGN.md): 0 clean stop, 75 restart requested, 78 configuration error, 1 failure.
Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway_core import __version__
from gateway_core.config import Config, ConfigError, load_config
from gateway_core.gc_tuning import tune_for_long_running_server
from gateway_core.model import Gate
from gateway_core.store import StoreError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = ConfigError.EXIT_CODE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchboard",
        description="Recovery-safe agent messaging gateway with a live operator console.",
    )
    parser.add_argument("--version", action="version", version=f"switchboard {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="the live console over a demo gateway with simulated users"
    )
    walk = commands.add_parser(
        "walkthrough", help="narrate a crash and restart with sessions in every recovery state"
    )
    for sub in (demo, walk):
        sub.add_argument(
            "--gate",
            choices=[gate.value for gate in Gate],
            default=Gate.SAFE.value,
            help="recovery gate the restarted gateway uses (default: safe)",
        )
        sub.add_argument(
            "--state-dir", type=Path, help="keep the demo state here instead of a temporary dir"
        )
    demo.add_argument("--read-only", action="store_true", help="show everything, change nothing")
    demo.add_argument(
        "--no-mouse", action="store_true", help="no mouse reporting (safer over SSH and tmux)"
    )

    config = commands.add_parser("config", help="print the effective configuration and sources")
    config.add_argument("-c", "--config", type=Path, help="TOML config file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            from console.demo import run_demo

            tune_for_long_running_server()
            if args.state_dir is not None:
                args.state_dir.mkdir(parents=True, exist_ok=True)
            return asyncio.run(
                run_demo(
                    Gate(args.gate),
                    args.state_dir,
                    read_only=args.read_only,
                    mouse=not args.no_mouse,
                )
            )
        if args.command == "walkthrough":
            from console.walkthrough import run_walkthrough

            return asyncio.run(run_walkthrough(Gate(args.gate), args.state_dir))
        if args.command == "config":
            return print_config(load_config(args.config))
    except ConfigError as error:
        print(f"switchboard: config error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreError as error:
        print(f"switchboard: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE
    return EXIT_FAILURE


def print_config(config: Config) -> int:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"switchboard config ({config.file or 'no file: defaults'})")
    for column in ("key", "value", "source"):
        table.add_column(column)
    for key, value, source in config.describe():
        table.add_row(Text(key), Text(value), Text(source))
    Console().print(table)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
