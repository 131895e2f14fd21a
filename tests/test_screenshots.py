"""The screenshots come from the real app over a real gateway (issue 13, item 20): the script
makes every picture, each shows what its scenario put there, and two runs draw the same."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "screenshots" / "make_screenshots.py"

pytestmark = pytest.mark.slow


def make(out: Path, *names: str) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--svg-only", "--out", str(out), *names],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


def text_of(svg: Path) -> str:
    """What the picture says: its text runs, without Rich's content-hash class names."""
    runs = re.findall(r"<text[^>]*>([^<]*)</text>", svg.read_text(encoding="utf-8"))
    return "".join(runs).replace("&#160;", " ")


def test_every_picture_is_made_from_the_real_app(tmp_path: Path) -> None:
    make(tmp_path)
    expected = {
        "sessions": ("loopback:mallory", "␛]0;pwned␇"),  # hostile text, inert and visible
        "recovery": ("ambiguous-tool", "suspended (operat", "a c f"),
        "processes": ("compiling unit", "killed", "exit 0"),
        "timers": ("loopback:bob",),
        "audit": ("kill-process", "refused", "TurnFinished"),
        "nodes": ("7 Nodes", "This gateway runs alone"),
        "confirm": ("Clear: never resume these?", "2 targets:"),
        "force_resume": ("she still needs it",),
        "leave": ("Drain and stop",),
        "help": ("Reset guard",),
        "read_only": ("READ-ONLY",),
        "narrow": ("3 Recovery",),
        "overview": ("DRAINING", "Drain: waiting"),
        "loop_guard": ("RESTART LOOP", "held back 1 turn"),
    }
    for name, words in expected.items():
        shown = text_of(tmp_path / f"{name}.svg")
        for word in words:
            assert word in shown, (name, word)
        assert "None" not in shown, name


def test_two_runs_draw_the_same_pictures(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    make(first, "recovery", "audit", "processes")
    make(second, "recovery", "audit", "processes")
    for name in ("recovery", "audit", "processes"):
        assert text_of(first / f"{name}.svg") == text_of(second / f"{name}.svg"), name
