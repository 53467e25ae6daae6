"""Session-wide leak check (a pytest plugin, registered in conftest.py): no log record created
during the suite, and no stderr of a CLI run made through the `cli` fixture or `run_cli`, may
carry a test secret or the text of a sample ticket. A test that leaks fails at teardown.

Only strings that cannot appear by accident are searched for, so there are no false positives:
the fake Gemini key and the test Pushgateway password, and every sentence of 30 characters or
more from samples/tickets.csv and samples/tickets.jsonl. Log records are seen as they are made
(Logger.makeRecord), whatever handler, level or format the code under test set up; records
below a logger's level are never made, so a test that wants DEBUG records scanned turns DEBUG
on (several do). Subprocesses' log lines reach the check through their stderr.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .fake_gemini import API_KEY
from .fake_openai import API_KEY as OPENAI_API_KEY
from .services import BASIC_AUTH_PASSWORD

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
MIN_FRAGMENT = 30
# LogRecord attributes that every record has; anything else came in through `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _sample_fragments() -> list[str]:
    texts = []
    with open(SAMPLES / "tickets.csv", encoding="utf-8", newline="") as f:
        texts += [row["text"] for row in csv.DictReader(f)]
    with open(SAMPLES / "tickets.jsonl", encoding="utf-8") as f:
        for line in f:
            obj = json.loads(line)
            texts += [obj.get("subject") or "", obj.get("body") or ""]
    fragments = {part.strip() for text in texts
                 for part in re.split(r"(?<=[.!?])\s+|\n", text)}
    return sorted(f for f in fragments if len(f) >= MIN_FRAGMENT)


SECRETS: tuple[str, ...] = (API_KEY, OPENAI_API_KEY, BASIC_AUTH_PASSWORD)
TICKET_FRAGMENTS: tuple[str, ...] = tuple(_sample_fragments())
_leaks: list[str] = []


def scan(text: str, where: str) -> None:
    """Note every secret or sample-ticket sentence found in `text` (reported at teardown)."""
    for secret in SECRETS:
        if secret in text:
            _leaks.append(f"{where}: a test secret ({secret[:6]}...)")
    for fragment in TICKET_FRAGMENTS:
        if fragment in text:
            _leaks.append(f"{where}: ticket text {fragment[:40]!r}")


def take() -> list[str]:
    """The leaks noted so far in this test, forgetting them (for tests of the check itself)."""
    found = list(_leaks)
    _leaks.clear()
    return found


def _record_text(record: logging.LogRecord) -> str:
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a broken format string is not our concern here
        message = f"{record.msg!r} % {record.args!r}"
    extras = {k: v for k, v in vars(record).items() if k not in _STANDARD}
    return f"{message} {extras!r}"


@pytest.fixture(scope="session", autouse=True)
def _scan_every_log_record() -> Iterator[None]:
    """Wraps Logger.makeRecord, which every enabled record goes through, `extra=` included
    (a LogRecord factory would not see the extras: they are set after it returns)."""
    make_record = logging.Logger.makeRecord

    def scanned(self: logging.Logger, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(self, *args, **kwargs)
        scan(_record_text(record), f"log record of {record.name}")
        return record

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(logging.Logger, "makeRecord", scanned)
        yield


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    _leaks.clear()
    yield
    leaks = take()
    if leaks:
        pytest.fail("secret or ticket text leaked:\n  " + "\n  ".join(dict.fromkeys(leaks)),
                    pytrace=False)
