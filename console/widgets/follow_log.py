"""A log that follows its end, like `tail -f` or `less +F`, until the reader scrolls up.

New lines keep the view at the end while it is there; once the reader scrolled up, new lines
arrive below without moving what they are reading, and End (or G) follows again. Arrows,
PageUp/PageDown, Home/End and g/G scroll. Lines are given as Text already made inert.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.binding import Binding
from textual.widgets import RichLog


class FollowLog(RichLog):
    BINDINGS = [
        Binding("g", "scroll_home", "Top", show=False),
        Binding("G", "scroll_end", "Follow", show=False),
    ]

    def __init__(self, *, max_lines: int = 2000, wrap: bool = False, id: str | None = None):
        super().__init__(max_lines=max_lines, wrap=wrap, auto_scroll=False, id=id)

    @property
    def following(self) -> bool:
        """At the end (or nothing to scroll yet): new lines keep it there."""
        return self.max_scroll_y == 0 or self.scroll_y >= self.max_scroll_y

    @property
    def plain_lines(self) -> list[str]:
        return [strip.text for strip in self.lines]

    def append(self, lines: Sequence[Text]) -> None:
        follow = self.following
        for line in lines:
            self.write(line, scroll_end=False)
        if follow:
            self.scroll_end(animate=False, immediate=False, x_axis=False)

    def replace(self, lines: Sequence[Text]) -> None:
        """Show exactly `lines`, keeping the reader's place unless it was following."""
        follow, y = self.following, self.scroll_y
        self.clear()
        for line in lines:
            self.write(line, scroll_end=False)
        if follow:
            self.scroll_end(animate=False, immediate=False, x_axis=False)
        else:
            self.scroll_to(y=y, animate=False, immediate=False)
