"""The console's tabs, whose labels fit the terminal's width.

Seven labels in full take more than 80 columns; Textual's tab bar would then scroll and hide
the first tab's key. Under that width the long labels are shortened instead (actions.py says
which and how), and given back in full when there is room again.
"""

from __future__ import annotations

from textual import events
from textual.widgets import TabbedContent

from console.actions import TABS, tab_bar_width, tab_label


class ConsoleTabs(TabbedContent):
    def on_resize(self, event: events.Resize) -> None:
        short = event.size.width < tab_bar_width()
        for tab in TABS:
            self.get_tab(tab.value).label = tab_label(tab, short=short)
