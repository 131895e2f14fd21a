"""Counting things in plain words: "1 row", "3 rows", never "row(s)"."""

from __future__ import annotations


def plural(count: int, noun: str, many: str | None = None) -> str:
    return f"{count} {noun if count == 1 else many or noun + 's'}"
