"""Tables on the command line: whole values when piped, wrapped (never cut) in a terminal.

Piped (a file, `| grep`, `| cat`) nothing is cut or wrapped: one line per row, columns
padded to their widest value, so scripts and eyes get every value whole. In a terminal, a
Rich table that folds long values onto more lines instead of ending them with "…". The
title is a line of its own, never squeezed to the width of a narrow table.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from console.safety import clean

WHOLE = 10_000  # characters of one value kept (a value is made inert, not shortened)


def print_table(
    title: str | None,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Sequence[str] = (),
    out: TextIO | None = None,
) -> None:
    """`rows` are untrusted text: made inert (control characters shown, no markup)."""
    stream = out or sys.stdout
    cells = [[clean(value, WHOLE) for value in row] for row in rows]
    if not stream.isatty():
        _plain(title, headers, cells, stream)
        return
    console = Console(file=stream)
    if title:
        console.print(Text(title))
    table = Table(show_lines=False)
    for header in headers:
        table.add_column(header, overflow="fold", justify="right" if header in right else "left")
    for row in cells:
        table.add_row(*(Text(value) for value in row))
    console.print(table)


def _plain(
    title: str | None, headers: Sequence[str], rows: list[list[str]], stream: TextIO
) -> None:
    if title:
        print(title, file=stream)
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    for row in [list(headers), *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip(), file=stream)


def print_lines(lines: Sequence[str], out: TextIO | None = None) -> None:
    for line in lines:
        print(clean(line, WHOLE), file=out or sys.stdout)
