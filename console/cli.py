"""The `switchboard` command line (subcommands may be added, never renamed: scripts use them).

    switchboard demo                 console + loopback users + scripted agent + live traffic
    switchboard walkthrough          a narrated crash and restart, as plain text
    switchboard console [-c FILE]    console with the configured gateway, in-process
    switchboard run [-c FILE]        headless production gateway (JSON logs, signals, sd_notify)
    switchboard attach [--read-only] console attached to a running gateway's control socket
    switchboard web [--listen H:P]   that console in a browser, read-only unless --allow-actions
    switchboard status [--json]
    switchboard recovery list [--json] | approve ID | clear ID | force-resume ID --reason TEXT
    switchboard quiet | resume-intake | drain [--timeout S] | restart
    switchboard config [-c FILE] | --sample
    switchboard completion bash | zsh

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
from typing import TYPE_CHECKING

from gateway_core import __version__
from gateway_core.config import Config, ConfigError, load_config
from gateway_core.control import Via
from gateway_core.event_loop import run_server
from gateway_core.gc_tuning import tune_for_long_running_server
from gateway_core.model import Gate
from gateway_core.service.state_lock import StateDirBusy
from gateway_core.store import StoreError

if TYPE_CHECKING:
    from console.web.access import Listen

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = ConfigError.EXIT_CODE

SCRIPT_OPS = {
    "status": "the gateway's state, counts, drain and restart-loop guard",
    "quiet": "stop starting new turns (messages are still received and kept)",
    "resume-intake": "leave quiet: queued messages start their turns",
    "drain": "finish the running turns (up to a deadline), then stop the gateway",
    "restart": "drain, then start again (a service exits 75 for its manager to restart it)",
}
RECOVERY_OPS = {
    "approve": "run held candidates now, by session id",
    "clear": "drop candidates by session id: they are never resumed",
    "force-resume": "resume candidates whatever their verdict (a reason is required)",
}


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return value


def _listen(text: str) -> Listen:
    from console.web.access import parse_listen

    try:
        return parse_listen(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


GATES = {
    Gate.SAFE: "resumes what is safe to run again, holds what needs an operator",
    Gate.OPERATOR: "holds every candidate, even a safe one: an operator approves each resume",
    Gate.ALL: "resumes every candidate whatever its verdict (the old way, for comparison)",
    Gate.OFF: "nothing automatic: every candidate waits for an operator",
}
EXAMPLES = """\
Examples:
  switchboard demo                                 try the console on a demo gateway
  switchboard run -c /etc/switchboard/switchboard.toml
                                                   the gateway as a service (systemd, containers)
  switchboard attach -c FILE                       the console on a running gateway
  switchboard status -c FILE                       what it is doing now (--json for scripts)
  switchboard web -c FILE                          the console in a browser (read-only)
  switchboard recovery list -c FILE                the conversations a restart interrupted
  switchboard recovery approve 12 -c FILE          run a held one now
  switchboard drain --timeout 30 -c FILE           finish running turns, then stop
  switchboard nodes -c FILE                        the nodes sharing a PostgreSQL store
  switchboard completion bash > ~/.local/share/bash-completion/completions/switchboard

Exit codes: 0 clean stop, 75 restart requested, 78 configuration error, 1 failure (or an
action the gateway refused).
"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples kept as written; every option with a real default says it."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)
        # Room for the longest command name ("resume-intake") beside its description.
        self._action_max_length = 20

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if default in (None, False, argparse.SUPPRESS) or "default" in text or not text:
            return text
        return f"{text} (default: {default})"


def _sub(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str
) -> argparse.ArgumentParser:
    return commands.add_parser(
        name, help=summary, description=summary[0].upper() + summary[1:] + ".",
        formatter_class=HelpFormatter,
    )  # fmt: skip


def _config_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", type=Path, metavar="FILE",
        help="the gateway's TOML config file (default: built-in defaults)",
    )  # fmt: skip


def _where(parser: argparse.ArgumentParser) -> None:
    _config_file(parser)
    parser.add_argument(
        "--socket", type=Path, metavar="PATH",
        help="the gateway's control socket (default: from the config: control.socket)",
    )  # fmt: skip


def _json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="stable JSON instead of a table")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchboard",
        description="Recovery-safe agent messaging gateway with a live operator console.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"switchboard {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = _sub(commands, "demo", "the live console over a demo gateway with simulated users")
    walk = _sub(
        commands, "walkthrough", "a crash and a restart, narrated as text (no console needed)"
    )
    gates = "; ".join(f"{gate.value}: {what}" for gate, what in GATES.items())
    for sub in (demo, walk):
        sub.add_argument(
            "--gate",
            choices=[gate.value for gate in Gate],
            default=Gate.SAFE.value,
            help=f"how the restarted gateway treats interrupted turns. {gates}",
        )
        sub.add_argument(
            "--state-dir", type=Path, metavar="DIR",
            help="keep the demo's state (database, log, jobs) here "
            "(default: a temporary dir, deleted at the end)",
        )  # fmt: skip
        sub.add_argument(
            "--keep-state",
            action="store_true",
            help="keep the temporary state dir at the end and print where it is",
        )
    console = _sub(commands, "console", "the configured gateway with the console, in this process")
    attach = _sub(commands, "attach", "the console, attached to a running gateway's socket")
    for sub in (demo, console, attach):
        sub.add_argument("--read-only", action="store_true", help="show everything, change nothing")
        sub.add_argument(
            "--no-mouse", action="store_true", help="no mouse reporting (safer over SSH and tmux)"
        )
    _config_file(console)
    _where(attach)
    attach.add_argument(
        "--via", choices=[via.value for via in Via],
        help="the client the audit records actions as coming through (switchboard web sets it)",
    )  # fmt: skip

    web = _sub(
        commands, "web", "the attached console in a browser, one per tab, read-only by default"
    )
    _where(web)
    web.add_argument(
        "--listen", type=_listen, default="127.0.0.1:8566", metavar="HOST:PORT",
        help="where the page is served; beyond loopback only with a token in web.token_env",
    )  # fmt: skip
    web.add_argument(
        "--allow-actions", action="store_true",
        help="let visitors act; each action is audited as coming from the web view",
    )  # fmt: skip

    run = _sub(commands, "run", "the gateway without a screen, for systemd or a container")
    _config_file(run)

    for name, summary in SCRIPT_OPS.items():
        sub = _sub(commands, name, summary)
        _where(sub)
        _json(sub)
        if name in ("drain", "restart"):
            sub.add_argument(
                "--timeout", type=_seconds, metavar="SECONDS",
                help="how long running turns may take before they are interrupted "
                "(default: the configured gateway.drain_timeout)",
            )  # fmt: skip

    recovery = _sub(commands, "recovery", "list and act on the turns a restart interrupted")
    actions = recovery.add_subparsers(dest="recovery_command", required=True, metavar="ACTION")
    listing = _sub(actions, "list", "every recovery candidate: verdict, state and why")
    _where(listing)
    _json(listing)
    for name, summary in RECOVERY_OPS.items():
        sub = _sub(actions, name, summary)
        _where(sub)
        sub.add_argument("ids", nargs="+", metavar="ID", help="session ids, as recovery list shows")
        _json(sub)
        if name == "force-resume":
            sub.add_argument("--reason", required=True, help="why (recorded in the audit log)")

    config = _sub(
        commands, "config", "print the effective configuration and where each value came from"
    )
    _config_file(config)
    config.add_argument(
        "--sample", action="store_true", help="print a sample file: every key, its default, a note"
    )

    nodes = _sub(
        commands, "nodes", "the gateway nodes sharing this PostgreSQL store: heartbeat, sessions"
    )
    _config_file(nodes)
    _json(nodes)

    completion = _sub(commands, "completion", "print a shell completion script for bash or zsh")
    completion.add_argument(
        "shell", choices=("bash", "zsh"),
        help="bash: source it, or put it in ~/.local/share/bash-completion/completions/; "
        "zsh: put it in a directory of $fpath as _switchboard",
    )  # fmt: skip
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
        if args.sample:
            from gateway_core.config_sample import sample_toml

            sys.stdout.write(sample_toml())
            return EXIT_OK
        return print_config(load_config(args.config))
    if command == "nodes":
        from console.nodes import show_nodes

        return asyncio.run(show_nodes(load_config(args.config), os.environ, as_json=args.json))
    if command == "completion":
        from console.completion import script

        print(script(build_parser(), args.shell), end="")
        return EXIT_OK
    if command in ("run", "console"):
        from console.serve import serve

        config = load_config(args.config)
        tune_for_long_running_server()
        with_console = command == "console"
        served = serve(
            config,
            os.environ,
            console=with_console,
            read_only=with_console and args.read_only,
            mouse=with_console and not args.no_mouse,
        )
        if with_console:
            return asyncio.run(served)  # Textual's own loop: asyncio's
        return run_server(served, os.environ)
    if command == "web":
        return _web(args)
    socket = _socket(args)
    if command == "attach":
        from console.serve import attach

        via = None if args.via is None else Via(args.via)
        return asyncio.run(
            attach(socket, read_only=args.read_only, mouse=not args.no_mouse, via=via)
        )
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


def _web(args: argparse.Namespace) -> int:
    from console.web.access import access_for
    from console.web.server import WebOptions, run_web, serve_logging

    config = load_config(args.config)
    access = access_for(args.listen, config.web, os.environ)
    options = WebOptions(
        socket=Path(args.socket) if args.socket is not None else config.control.socket,
        listen=args.listen,
        access=access,
        max_clients=config.web.max_clients,
        allow_actions=args.allow_actions,
        hidden_env=(config.web.token_env,),
    )
    serve_logging(config.log.level, access.token)
    return asyncio.run(run_web(options, token_env=config.web.token_env))


def _socket(args: argparse.Namespace) -> Path:
    if getattr(args, "socket", None) is not None:
        return Path(args.socket)
    return load_config(getattr(args, "config", None)).control.socket


def print_config(config: Config) -> int:
    from console.cli_tables import print_table

    title = f"switchboard config ({config.file or 'no file: defaults'})"
    print_table(title, ("key", "value", "source"), list(config.describe()))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
