"""The suite-wide leak check (tests/leakcheck.py) itself: it would notice a leak."""

from __future__ import annotations

import logging

from . import leakcheck
from .fake_gemini import API_KEY


def test_the_leak_check_sees_a_key_in_a_log_records_extra_fields():
    logging.getLogger("ticketclf.anything").warning("request failed", extra={
        "event": "oops", "headers": {"x-goog-api-key": API_KEY}})
    (leak,) = leakcheck.take()  # taken, so that this test itself passes
    assert "log record of ticketclf.anything: a test secret" in leak


def test_the_leak_check_sees_sample_ticket_text_on_stderr_but_not_ids_or_hashes():
    sentence = leakcheck.TICKET_FRAGMENTS[0]
    leakcheck.scan(f'{{"event": "ticket_escalated", "ticket_id": "T-100001", '
                   f'"text_sha256": "3f2a9c0d1e2b4a5c"}}\nerror: {sentence}', "stderr")
    assert leakcheck.take() == [f"stderr: ticket text {sentence[:40]!r}"]
    assert len(leakcheck.TICKET_FRAGMENTS) > 50  # every sample file contributes
