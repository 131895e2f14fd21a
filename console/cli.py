"""The `switchboard` command line (DESIGN.md's contract; subcommands may be added, not renamed).

    switchboard demo                 console + loopback users + scripted agent + live traffic
    switchboard walkthrough          a narrated crash and restart, as plain text
    switchboard console [-c FILE]    console with the configured gateway, in-process
    switchboard run [-c FILE]        headless production gateway (JSON logs, signals, sd_notify)
    switchboard attach [--read-only] console attached to a running gateway's control socket
    switchboard status [--json]
    switchboard recovery list [--json] | approve ID | clear ID | force-resume ID --reason TEXT
    switchboard quiet | resume-intake | drain [--timeout S] | restart
    switchboard config [-c FILE]

Exit codes: 0 clean stop, 75 restart requested, 78 configuration error, 1 failure (or an
action the gateway refused). Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway_core import __version__
from gateway_core.config import Config, ConfigError, load_config
from gateway_core.gc_tuning import tune_for_long_running_server
from gateway_core.model import Gate
from gateway_core.service.state_lock import StateDirBusy
from gateway_core.store import StoreError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = ConfigError.EXIT_CODE

SCRIPT_OPS = ("status", "quiet", "resume-intake", "drain", "restart")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return value


def _where(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", type=Path, help="TOML config file")
    parser.add_argument("--socket", type=Path, help="control socket (default: from the config)")


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
        sub.add_argument(
            "--keep-state",
            action="store_true",
            help="keep the temporary state dir at the end and print where it is",
        )
    for sub in (demo, console := commands.add_parser(
        "console", help="the console with the configured gateway, in this process"
    ), attach := commands.add_parser(
        "attach", help="the console, attached to a running gateway's control socket"
    )):  # fmt: skip
        sub.add_argument("--read-only", action="store_true", help="show everything, change nothing")
        sub.add_argument(
            "--no-mouse", action="store_true", help="no mouse reporting (safer over SSH and tmux)"
        )
    console.add_argument("-c", "--config", type=Path, help="TOML config file")
    _where(attach)

    run = commands.add_parser("run", help="the gateway without a UI (for systemd or a container)")
    run.add_argument("-c", "--config", type=Path, help="TOML config file")

    for name in SCRIPT_OPS:
        sub = commands.add_parser(name, help=f"{name} (over the control socket)")
        _where(sub)
        sub.add_argument("--json", action="store_true", help="stable JSON output")
        if name in ("drain", "restart"):
            sub.add_argument("--timeout", type=_seconds, help="drain timeout in seconds")

    recovery = commands.add_parser("recovery", help="recovery candidates")
    actions = recovery.add_subparsers(dest="recovery_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every candidate")
    _where(listing)
    listing.add_argument("--json", action="store_true", help="stable JSON output")
    for name in ("approve", "clear", "force-resume"):
        sub = actions.add_parser(name, help=f"{name} candidate(s) by session id")
        _where(sub)
        sub.add_argument("ids", nargs="+", help="session id(s)")
        sub.add_argument("--json", action="store_true", help="stable JSON output")
        if name == "force-resume":
            sub.add_argument("--reason", required=True, help="why (recorded in the audit)")

    config = commands.add_parser("config", help="print the effective configuration and sources")
    config.add_argument("-c", "--config", type=Path, help="TOML config file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as error:
        print(f"switchboard: config error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreError as error:
        print(f"switchboard: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except StateDirBusy as error:
        print(f"switchboard: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as error:  # e.g. the control socket cannot be created where configured
        print(f"switchboard: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE


def _dispatch(args: argparse.Namespace) -> int:
    command = args.command
    if command == "demo":
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
                keep=args.keep_state,
            )
        )
    if command == "walkthrough":
        from console.walkthrough import run_walkthrough

        return asyncio.run(run_walkthrough(Gate(args.gate), args.state_dir, args.keep_state))
    if command == "config":
        return print_config(load_config(args.config))
    if command in ("run", "console"):
        from console.serve import serve

        config = load_config(args.config)
        tune_for_long_running_server()
        with_console = command == "console"
        return asyncio.run(
            serve(
                config,
                os.environ,
                console=with_console,
                read_only=with_console and args.read_only,
                mouse=with_console and not args.no_mouse,
            )
        )
    socket = _socket(args)
    if command == "attach":
        from console.serve import attach

        return asyncio.run(attach(socket, read_only=args.read_only, mouse=not args.no_mouse))
    from console.ops import run_op

    if command == "recovery":
        op = "recovery-list" if args.recovery_command == "list" else args.recovery_command
        targets = [] if op == "recovery-list" else list(args.ids)
        reason = getattr(args, "reason", None)
        return asyncio.run(
            run_op(socket, op, as_json=args.json, targets=targets, reason=reason, timeout=None)
        )
    return asyncio.run(
        run_op(
            socket,
            command,
            as_json=args.json,
            targets=[],
            reason=None,
            timeout=getattr(args, "timeout", None),
        )
    )


def _socket(args: argparse.Namespace) -> Path:
    if getattr(args, "socket", None) is not None:
        return Path(args.socket)
    return load_config(getattr(args, "config", None)).control.socket


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
