"""Durations and counts as the console writes them: one function each, rounded right."""

from __future__ import annotations

import pytest

from console.durations import duration, spoken
from console.words import plural


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, "–"),
        (-3.0, "0s"),
        (0.4, "0s"),
        (59.4, "59s"),
        (59.6, "1m00s"),
        (299.7, "5m00s"),
        (482.0, "8m02s"),
        (3599.6, "1h00m"),
        (3 * 3600 + 17 * 60 + 5, "3h17m"),
        (3 * 3600 + 59 * 60 + 45, "4h00m"),
        (86400 * 3 + 3600 * 4 + 100, "3d4h"),
        (86400 * 2 - 60, "2d0h"),
    ],
)
def test_a_duration_is_rounded_before_it_is_split(seconds: float | None, shown: str) -> None:
    assert duration(seconds) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(5.0, "just now"), (25.0, "20s ago"), (125.0, "2m ago"), (7300.0, "2h ago")],
)
def test_a_coarse_age_for_last_activity(seconds: float, shown: str) -> None:
    assert duration(seconds, coarse=True) == shown


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (25.0, "25 s"),
        (59.6, "1 min"),
        (90.0, "1 min 30 s"),
        (900.0, "15 min"),
        (5400, "1 h 30 min"),
    ],
)
def test_a_duration_in_a_sentence(seconds: float, said: str) -> None:
    assert spoken(seconds) == said


def test_plural() -> None:
    assert [plural(n, "row") for n in (0, 1, 2)] == ["0 rows", "1 row", "2 rows"]


def test_a_candidates_settled_calls_and_what_its_user_was_told_read_in_words() -> None:
    from console.recovery_text import detail_fields
    from gateway_core.model import RecoveryState
    from gateway_core.snapshot import CandidateView

    view = CandidateView(
        7, "telegram:1:-", "ada", RecoveryState.HELD, "crash", "ambiguous-tool", "hold",
        "effect unknown", None, 0, None,
        settled=("terminal: finished (exit 0)", "terminal: unknown"), told="held",
    )  # fmt: skip
    fields = dict(detail_fields(view))
    assert fields["Tool calls settled"] == "terminal: finished (exit 0); terminal: unknown"
    assert fields["User told"] == "held"
    assert not any("(" in label or "'" in value[:2] for label, value in fields.items())
