"""The console at the sizes operators use: 80x24, 120x40 and 200x50 (issue 13, item 11).

At every size the header keeps the state, the candidates and any alarm; the tab bar shows
all seven tabs; the footer keeps the tab's own keys, help and leave; no table needs sideways
scrolling; and spare width goes to the text columns. Pictured with the fixed data of
tests/support/console_data.py (the restart-loop guard tripped, so its alarm must fit too).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from textual.pilot import Pilot

from console.app import ConsoleApp
from console.widgets.keyed_table import KeyedTable
from tests.support.console_data import show, static_backend
from tests.support.console_pilot import rendered_lines
from tests.test_console_snapshots import SnapCompare

SIZES = {"80x24": (80, 24), "120x40": (120, 40), "200x50": (200, 50)}
TABS = {
    "overview": ("1", None),
    "sessions": ("2", "#session-table"),
    "recovery": ("3", "#candidate-table"),
    "processes": ("4", "#process-table"),
    "audit": ("6", "#audit-table"),
    "nodes": ("7", "#node-table"),
}
OWN_KEYS = {
    "overview": (),
    "sessions": ("t Interrupt", "/ Filter"),
    "recovery": ("a Approve", "c Clear"),
    "processes": ("k Kill", "l Log"),
    "audit": (),
    "nodes": (),
}


@dataclass
class Seen:
    lines: list[str] = field(default_factory=list)
    table_overflow: int = 0
    column_widths: dict[str, int] = field(default_factory=dict)


def take(snap_compare: SnapCompare, tab: str, size: tuple[int, int]) -> tuple[bool, Seen]:
    key, table_id = TABS[tab]
    # The nodes tab as one node of four (on SQLite its table is not shown at all).
    backend = static_backend(drain=False, loop=True, cluster=tab == "nodes")
    app = ConsoleApp(backend, refresh_every=3600)
    seen = Seen()

    async def run_before(pilot: Pilot[str]) -> None:
        await show(pilot, (key, "down") if tab == "recovery" else (key,))
        seen.lines = rendered_lines(app)
        if table_id is not None:
            table = app.query_one(table_id, KeyedTable)
            seen.table_overflow = table.max_scroll_x
            seen.column_widths = {str(k.value): c.width for k, c in table.columns.items()}

    return snap_compare(app, terminal_size=size, run_before=run_before), seen


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("tab", list(TABS))
def test_each_tab_fits_each_size(snap_compare: SnapCompare, tab: str, size: str) -> None:
    matched, seen = take(snap_compare, tab, SIZES[size])
    header, tabs, footer = seen.lines[0], seen.lines[1], seen.lines[-1]
    for words in ("RUNNING", "candidates 9", "RESTART LOOP"):
        assert words in header, (words, header)
    for number, name in enumerate(
        ("Overview", "Sessions", "Recovery", "Processes", "Timers", "Audit", "Nodes"), 1
    ):
        assert f"{number} {name}" in tabs, tabs
    for words in (*OWN_KEYS[tab], "? Help", "q Leave"):
        assert words in footer, (words, footer)
    assert seen.table_overflow == 0  # every shown column fits: no sideways scrolling
    assert matched


async def widths(size: tuple[int, int]) -> dict[str, int]:
    app = ConsoleApp(static_backend(drain=False), refresh_every=3600)
    async with app.run_test(size=size) as pilot:
        await show(pilot, ("3",))
        return app.query_one("#candidate-table", KeyedTable).widths


async def test_spare_width_goes_to_the_text_columns() -> None:
    middle = await widths(SIZES["120x40"])
    wide = await widths(SIZES["200x50"])
    narrow = await widths(SIZES["80x24"])
    assert wide["why"] >= middle["why"] + 60
    assert wide["verdict"] == middle["verdict"]
    assert {"verdict", "keys", "why", "where"} <= set(narrow)
    assert len(narrow) < len(middle)  # the droppable columns went first
