"""The footer, fitted to the terminal: the tab's own keys first, then help and leave, then
the gateway-wide keys; what does not fit is left out (? lists everything), instead of the
row being cut in the middle of a word."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

from console.actions import footer_rank

PALETTE_ROOM = 14  # the palette key, docked on the right: " ^p palette " and its border
ALWAYS = ("help", "leave")  # kept even when the tab's own keys fill the row


class KeyBar(Footer):
    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        active = self.screen.active_bindings
        seen: set[str] = set()
        bindings: list[tuple[Binding, bool, str]] = []
        for _, binding, enabled, tooltip in active.values():
            if binding.show and binding.action not in seen:
                seen.add(binding.action)
                bindings.append((binding, enabled, tooltip))
        bindings.sort(key=lambda item: footer_rank(item[0].action))
        room = self.size.width - PALETTE_ROOM if self.size.width else 10_000
        for binding, enabled, tooltip in self._fit(bindings, room):
            yield FooterKey(
                binding.key,
                self.app.get_key_display(binding),
                binding.description,
                binding.action,
                disabled=not enabled,
                tooltip=tooltip,
            ).data_bind(compact=Footer.compact)
        palette = active.get(self.app.COMMAND_PALETTE_BINDING)
        if self.show_command_palette and self.app.ENABLE_COMMAND_PALETTE and palette:
            yield FooterKey(
                palette.binding.key,
                self.app.get_key_display(palette.binding),
                palette.binding.description,
                palette.binding.action,
                classes="-command-palette",
                disabled=not palette.enabled,
                tooltip=palette.binding.tooltip or palette.binding.description,
            )

    def _fit(
        self, bindings: list[tuple[Binding, bool, str]], room: int
    ) -> list[tuple[Binding, bool, str]]:
        """In rank order, as many as fit; help and leave are given their room first."""

        def width(binding: Binding) -> int:
            # FooterKey: " key " then "description " (non-compact padding).
            return len(self.app.get_key_display(binding)) + len(binding.description) + 3

        always = [b for b in bindings if b[0].action in ALWAYS]
        left = room - sum(width(b[0]) for b in always)
        chosen = []
        for item in bindings:
            if item in always:
                chosen.append(item)
            elif width(item[0]) <= left:
                chosen.append(item)
                left -= width(item[0])
            else:
                left = -1  # keep the order: nothing after a key that did not fit
        return chosen

    def on_resize(self) -> None:
        self.call_after_refresh(self.recompose)
