"""The one boundary where untrusted text enters the screen.

Chat messages, user names, command lines, process output and log lines may hold markup
(`[/x]` crashes a Static; `[@click=app.quit]` becomes a live link) and terminal control
sequences (ESC and C1 reach the terminal raw through every Textual widget). Everything
untrusted passes through `clean()` and is shown as a `Text` object, never parsed as markup.
"""

from __future__ import annotations

from rich.text import Text

# Bidirectional overrides and zero-width characters can make a line read as something else.
_INVISIBLE = {
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
    0x200B,
    0x200C,
    0x200D,
    0x2060,
    0xFEFF,
}


def _visible(char: str, multiline: bool) -> str:
    code = ord(char)
    if char == "\n":
        return "\n" if multiline else " "
    if char == "\t":
        return "    " if multiline else " "
    if code < 0x20:
        return chr(0x2400 + code)  # ␛ for ESC, ␇ for BEL, ...: visible, inert
    if code == 0x7F:
        return "␡"
    if 0x80 <= code <= 0x9F:
        return "�"
    if code in _INVISIBLE:
        return ""
    return char


def clean(text: object, limit: int = 300, *, multiline: bool = False) -> str:
    """Untrusted text made inert: control characters shown as symbols, length bounded."""
    raw = str(text)
    if len(raw) > limit * 4:  # never walk a megabyte to show a few hundred characters
        raw = raw[: limit * 4]
    out = "".join(_visible(char, multiline) for char in raw)
    return out if len(out) <= limit else out[: limit - 1] + "…"


def safe(text: object, limit: int = 300, *, style: str = "", multiline: bool = False) -> Text:
    """A Text cell for untrusted text: never parsed as markup."""
    return Text(clean(text, limit, multiline=multiline), style=style, no_wrap=not multiline)
