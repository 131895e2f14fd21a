"""A DataTable that is updated by key, never rebuilt, and keeps its cursor on the same row.

DataTable cursors are index-based: removing a row above the cursor, or sorting, silently
moves it to another session. `apply()` diffs a wanted list of rows against what is shown,
touches only changed cells, re-orders only when the order changed, and puts the cursor back on
the row it was on (by key), all inside one batch. Columns have fixed widths: re-measuring a
column of thousands of rows stalls the app for seconds: widths are decided here, from the
table's own width, when it is resized (console.rows.fit_columns: the most droppable columns
go first on a narrow terminal, text columns take the spare width of a wide one), and the
table is rebuilt then, and only then. Cells arrive as (text, tone); the tone's look comes
from the stylesheet (`.tone--hot`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.text import Text
from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist

from console.rows import Cell, Cells, Column, fit_columns
from console.tones import TONE_CLASSES, Toned

REBUILD_AFTER = 20
SCROLLBAR = 2  # the vertical scrollbar's width, kept free so no row needs sideways scrolling


class KeyedTable(DataTable[Text], Toned):
    COMPONENT_CLASSES = TONE_CLASSES
    DEFAULT_CSS = """
    KeyedTable { height: 1fr; }
    """

    def __init__(self, columns: Sequence[Column], *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._columns = tuple(columns)
        self._shown: dict[str, Cells] = {}
        self._order: list[str] = []
        self._layout: list[tuple[Column, int]] = [(c, c.width) for c in self._columns]
        self._visible = list(range(len(self._columns)))  # indexes of the shown columns
        self._hidden: frozenset[str] = frozenset()  # left out whatever the width

    def on_mount(self) -> None:
        self._add_columns()

    def _add_columns(self) -> None:
        for column, width in self._layout:
            self.add_column(Text(column.label), width=width, key=column.key)

    def on_resize(self) -> None:
        self._relayout()

    def hide(self, keys: Iterable[str]) -> None:
        """Leave these columns out (a column that would say the same on every row, such as
        the owner node on a gateway that runs alone), and give their room to the others."""
        hidden = frozenset(keys)
        if hidden != self._hidden:
            self._hidden = hidden
            self._relayout()

    def _relayout(self) -> None:
        wanted = [c for c in self._columns if c.key not in self._hidden]
        layout = fit_columns(wanted, self.size.width - SCROLLBAR)
        if layout == self._layout or self.size.width <= SCROLLBAR:
            return
        keep, scroll_y = self.current_key(), self.scroll_y
        self._layout = layout
        shown = {column.key for column, _ in layout}
        self._visible = [i for i, c in enumerate(self._columns) if c.key in shown]
        with self.app.batch_update():
            self.clear(columns=True)
            self._add_columns()
            for key in self._order:
                self.add_row(*self._texts(self._shown[key]), key=key)
            if keep is not None and keep in self._shown:
                self.move_cursor(row=self.get_row_index(keep), animate=False, scroll=False)
                self.scroll_y = scroll_y

    @property
    def widths(self) -> dict[str, int]:
        """The shown columns and their widths (what the terminal's width allowed)."""
        return {column.key: width for column, width in self._layout}

    def _texts(self, cells: Cells) -> list[Text]:
        return [self._text(cells[i]) for i in self._visible]

    @property
    def keys(self) -> list[str]:
        return list(self._order)

    def current_key(self) -> str | None:
        if not self._shown or self.cursor_row < 0:
            return None
        try:
            row_key = self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key
        except CellDoesNotExist:
            return None
        return None if row_key.value is None else str(row_key.value)

    def apply(self, rows: Sequence[tuple[str, Cells]]) -> None:
        """Show exactly `rows`, in this order, changing as little as possible."""
        keep = self.current_key()
        scroll_y = self.scroll_y
        wanted = dict(rows)
        gone = [k for k in self._shown if k not in wanted]
        with self.app.batch_update():
            if len(gone) > REBUILD_AFTER:
                # remove_row re-indexes every row (about 0.5 ms each with 500 rows): past a
                # few dozen removals, starting over is cheaper than removing one by one.
                self.clear()
                self._shown.clear()
                gone = []
            for key in gone:
                self.remove_row(key)
                del self._shown[key]
            for key, cells in rows:
                shown = self._shown.get(key)
                if shown is None:
                    self.add_row(*self._texts(cells), key=key)
                elif shown != cells:
                    for i in self._visible:
                        if shown[i] != cells[i]:
                            self.update_cell(key, self._columns[i].key, self._text(cells[i]))
                self._shown[key] = cells
            order = [key for key, _ in rows]
            if order != self._current_order():
                position = {key: index for index, key in enumerate(order)}
                self.sort("id", key=lambda cell: position.get(cell.plain, len(position)))
            self._order = order
            if keep is not None and keep in self._shown:
                self.move_cursor(row=self.get_row_index(keep), animate=False, scroll=False)
                self.scroll_y = scroll_y

    def _text(self, cell: Cell) -> Text:
        return Text(cell.text, style=self.tone_style(cell.tone), no_wrap=True, overflow="ellipsis")

    def _current_order(self) -> list[str]:
        return [str(row.key.value) for row in self.ordered_rows]
