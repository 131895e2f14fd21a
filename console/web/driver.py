"""Textual's web driver for a visitor's console, which also ends when its server goes away.

The stock driver reads keys from its standard input, a pipe from the web server, and only
stops reading when that pipe closes; the console would then run on, attached to the gateway,
for nobody. Here the closed pipe ends the app, so a web server that is killed leaves no
console processes behind.
"""

from __future__ import annotations

from textual import messages
from textual.drivers.web_driver import WebDriver

DRIVER = f"{__name__}:VisitorDriver"  # for TEXTUAL_DRIVER


class VisitorDriver(WebDriver):
    def run_input_thread(self) -> None:
        super().run_input_thread()
        if not self.exit_event.is_set():
            # Input ended without the app stopping: the server closed the pipe, or died.
            self.send_message(messages.ExitApp())
