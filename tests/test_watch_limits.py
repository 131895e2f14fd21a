"""Watch-pattern limits (pure bookkeeping on a given monotonic time)."""

from __future__ import annotations

from gateway_core.processes.watch import (
    BREAKER_COOLDOWN,
    LIFETIME,
    MAX_LINES,
    WINDOW,
    Breaker,
    BreakerTripped,
    Match,
    WatchDisabled,
    Watcher,
    WatchStatus,
    find_matches,
)


def test_a_matching_line_is_reported_with_its_pattern() -> None:
    watcher = Watcher(("ERROR",), Breaker())
    (match,) = watcher.feed(["INFO ok", "ERROR disk full"], now=0)
    assert match == Match("ERROR", ("ERROR disk full",), suppressed=0)


def test_a_chunk_of_many_matching_lines_is_one_bounded_match() -> None:
    found = find_matches(("ERROR",), [f"ERROR {i}" for i in range(30)])
    assert found is not None
    assert len(found[1]) == MAX_LINES
    assert find_matches(("",), ["anything"]) is None  # an empty pattern matches nothing


def test_matches_inside_the_window_are_suppressed_and_counted_in_the_next() -> None:
    watcher = Watcher(("E",), Breaker())
    assert len(watcher.feed(["E1"], now=0)) == 1
    assert watcher.feed(["E2"], now=1) == []
    assert watcher.feed(["E3"], now=WINDOW - 0.1) == []
    (match,) = watcher.feed(["E4"], now=WINDOW)
    assert isinstance(match, Match) and match.suppressed == 2
    (clean,) = watcher.feed(["E5"], now=2 * WINDOW + 1)
    assert isinstance(clean, Match) and clean.suppressed == 0


def test_three_strike_windows_in_a_row_disable_watching_once() -> None:
    watcher = Watcher(("E",), Breaker())
    now = 0.0
    for _ in range(3):  # three windows, each with a suppressed match
        assert len(watcher.feed(["E"], now=now)) == 1
        assert watcher.feed(["E"], now=now + 1) == []
        now += WINDOW
    (disabled,) = watcher.feed(["E"], now=now)
    assert disabled == WatchDisabled(WatchStatus.DISABLED_STRIKES, 3)
    assert watcher.feed(["E"], now=now + 100) == []  # nothing more, ever


def test_a_clean_window_resets_the_strikes() -> None:
    watcher = Watcher(("E",), Breaker())
    now = 0.0
    for _ in range(2):
        watcher.feed(["E"], now=now)
        watcher.feed(["E"], now=now + 1)
        now += WINDOW
    watcher.feed(["E"], now=now)  # a window without drops...
    now += WINDOW
    for _ in range(2):  # ...so two more strike windows are not enough
        assert len(watcher.feed(["E"], now=now)) == 1
        watcher.feed(["E"], now=now + 1)
        now += WINDOW
    assert isinstance(watcher.feed(["E"], now=now)[0], Match)


def test_the_lifetime_cap_delivers_the_last_match_then_disables() -> None:
    watcher = Watcher(("E",), Breaker())
    outcomes = [watcher.feed(["E"], now=i * WINDOW) for i in range(LIFETIME)]
    assert all(isinstance(o[0], Match) for o in outcomes)
    assert outcomes[-1][1] == WatchDisabled(WatchStatus.DISABLED_CAP, LIFETIME)
    assert watcher.feed(["E"], now=LIFETIME * WINDOW) == []


def test_the_global_breaker_trips_once_and_reports_what_it_dropped() -> None:
    breaker = Breaker()
    watchers = [Watcher(("E",), breaker) for _ in range(18)]
    outcomes = [w.feed(["E"], now=i * 0.5) for i, w in enumerate(watchers)]
    delivered = [o for o in outcomes if o and isinstance(o[0], Match)]
    tripped = [o for o in outcomes if o and isinstance(o[0], BreakerTripped)]
    assert (len(delivered), len(tripped)) == (15, 1)
    assert outcomes[-1] == []  # dropped during the cooldown, counted
    late = Watcher(("E",), breaker)
    (released,) = late.feed(["E"], now=8 + BREAKER_COOLDOWN)
    assert isinstance(released, Match) and released.dropped_by_breaker == 3


def test_quiet_time_between_chatty_bursts_counts_as_clean_windows() -> None:
    watcher = Watcher(("E",), Breaker())
    now = 0.0
    for _ in range(5):  # a burst of two every ten minutes: never three strikes in a row
        (match,) = watcher.feed(["E"], now=now)
        assert isinstance(match, Match)
        assert watcher.feed(["E"], now=now + 1) == []
        now += 600
    assert watcher.status is WatchStatus.WATCHING
