"""The states the store's SQL writes and reads are the enums' members, spelled the same.

The store writes an outbox row's or an inbox item's state in its SQL text (a partial index is
picked only for a WHERE whose literal SQLite can see), and the code reads them back as
OutboxStatus and InboxStatus. A literal spelled differently in one statement would write a state
no enum member names (and the row could not be read back) or look for one nothing writes."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path

import pytest

from gateway_core.model import InboxStatus, OutboxStatus

STORE = Path(__file__).resolve().parent.parent / "gateway_core" / "store"

# `status = 'x'`, `status != 'x'`, `status IN ('x', 'y')`, `DEFAULT 'x'` after a status column,
# and the words of a CASE that sets a status.
_COMPARED = re.compile(r"\bstatus\s*(?:=|!=)\s*'(\w+)'")
_LISTED = re.compile(r"\bstatus\s+IN\s*\(([^)]*)\)")
_DEFAULTED = re.compile(r"\bstatus\s+TEXT\s+NOT\s+NULL\s+DEFAULT\s+'(\w+)'")
_CASE = re.compile(r"\bstatus\s*=\s*CASE\b(.*?)\bEND\b", re.DOTALL)
_WORD = re.compile(r"'(\w+)'")


def status_words(text: str) -> set[str]:
    words = set(_COMPARED.findall(text)) | set(_DEFAULTED.findall(text))
    for listed in _LISTED.findall(text):
        words |= set(_WORD.findall(listed))
    for case in _CASE.findall(text):
        words |= set(_WORD.findall(case.split(" THEN ", 1)[-1]))
    return words


@pytest.mark.parametrize(
    ("module", "statuses"), [("outbox.py", OutboxStatus), ("inbox.py", InboxStatus)]
)
def test_every_state_a_statement_names_is_a_member(module: str, statuses: type[StrEnum]) -> None:
    words = status_words((STORE / module).read_text())
    assert words, f"no status literal found in {module}: the patterns above need updating"
    assert words <= {member.value for member in statuses}, words


def test_the_states_the_tables_start_in_are_members() -> None:
    schema = (STORE / "schema.py").read_text()
    inbox = schema[schema.index("CREATE TABLE inbox") :]
    outbox = schema[schema.index("CREATE TABLE outbox (") :]
    first_inbox, first_outbox = _DEFAULTED.search(inbox), _DEFAULTED.search(outbox)
    assert first_inbox is not None and first_outbox is not None
    assert InboxStatus(first_inbox[1]) is InboxStatus.NEW
    assert OutboxStatus(first_outbox[1]) is OutboxStatus.PENDING


def test_the_patterns_find_a_misspelled_state() -> None:
    # The check above can fail: a statement with a word no member has is caught.
    words = status_words("UPDATE outbox SET status = 'sendng' WHERE status IN ('pending', 'x')")
    assert {"sendng", "x"} <= words
