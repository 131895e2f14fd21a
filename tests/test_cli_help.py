"""`switchboard --help` and shell completion (issue 13, item 19): every subcommand says in one
line what it does, options show their defaults, --gate explains its choices, the top-level
help has an example per common task, and bash and zsh complete subcommands and options."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from console.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
SWITCHBOARD = [sys.executable, "-m", "console.cli"]
COMMANDS = (
    "demo", "walkthrough", "console", "attach", "run", "status", "quiet", "resume-intake",
    "drain", "restart", "recovery", "config", "completion",
)  # fmt: skip


def helped(*args: str) -> str:
    done = subprocess.run(
        [*SWITCHBOARD, *args, "--help"], capture_output=True, text=True, timeout=60, cwd=REPO,
        env={"PATH": os.environ["PATH"], "COLUMNS": "100"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_subcommand_has_a_description_that_is_not_its_own_name() -> None:
    top = helped()
    lines = {line.split()[0]: line for line in top.splitlines() if line.startswith("    ")}
    for command in COMMANDS:
        line = lines.get(command, "")
        described = line.removeprefix("    ").removeprefix(command).strip()
        assert len(described.split()) >= 3, (command, line)
        assert "(over the control socket)" not in described
        assert not described.startswith(command), line


def test_the_top_level_help_has_an_example_per_common_task() -> None:
    top = helped()
    assert "Examples:" in top
    for example in (
        "switchboard demo",
        "switchboard run -c",
        "switchboard attach",
        "switchboard status",
        "switchboard recovery list",
        "switchboard recovery approve",
        "switchboard drain --timeout",
        "switchboard completion bash",
    ):
        assert example in top, example


def test_options_show_their_defaults_and_the_gates_are_explained() -> None:
    demo = " ".join(helped("demo").split())
    for gate, words in (
        ("safe", "resumes what is safe"),
        ("operator", "holds"),
        ("all", "resumes every"),
        ("off", "nothing automatic"),
    ):
        assert f"{gate}:" in demo and words in demo, gate
    assert "(default: safe)" in demo
    drain = " ".join(helped("drain").split())
    assert "default: the configured gateway.drain_timeout" in drain
    assert "default: from the config" in drain  # --socket


def options_of(command: str) -> set[str]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    options = {o for action in sub.choices[command]._actions for o in action.option_strings}
    return options - {"-h", "--help"}


def bash_complete(line: str) -> list[str]:
    script = subprocess.run(
        [*SWITCHBOARD, "completion", "bash"], capture_output=True, text=True, timeout=60,
        cwd=REPO, check=True,
    ).stdout  # fmt: skip
    words = line.split(" ")
    program = (
        f"{script}\nCOMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}"
        "\n_switchboard\nprintf '%s\\n' \"${COMPREPLY[@]}\""
    )
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return sorted(done.stdout.split())


def test_bash_completes_subcommands_actions_and_options() -> None:
    assert bash_complete("switchboard rec") == ["recovery"]
    assert bash_complete("switchboard re") == ["recovery", "restart", "resume-intake"]
    assert bash_complete("switchboard recovery ") == ["approve", "clear", "force-resume", "list"]
    assert set(bash_complete("switchboard drain --")) == {
        o for o in options_of("drain") if o.startswith("--")
    }
    assert bash_complete("switchboard demo --gate ") == ["all", "off", "operator", "safe"]
    assert bash_complete("switchboard completion ") == ["bash", "zsh"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="needs zsh")
def test_zsh_completion_is_valid_and_lists_the_subcommands() -> None:
    script = subprocess.run(
        [*SWITCHBOARD, "completion", "zsh"], capture_output=True, text=True, timeout=60,
        cwd=REPO, check=True,
    ).stdout  # fmt: skip
    assert script.startswith("#compdef switchboard")
    checked = subprocess.run(["zsh", "-n", "-c", script], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    for command in COMMANDS:
        assert f"'{command}:" in script, command
