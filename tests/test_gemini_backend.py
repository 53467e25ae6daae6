"""Gemini done properly, against the fake server through the real google-genai SDK: the
server's RetryInfo and Retry-After are waited for (within bounds), safety settings are
explicit and configurable, and cached input tokens are counted and priced."""

from __future__ import annotations

import email.utils
import time

import pytest

from ticketclf.llm import EscalationStats, RetryPolicy
from ticketclf.llm.limits import retry_after_seconds

from .fake_gemini import answer_body, error
from .test_llm_escalation import FAST_RETRY, assert_fell_back, escalator, tickets


@pytest.mark.parametrize("reply", [error(429, retry_delay="0.8s"),
                                   error(503, headers={"Retry-After": "1"})],
                         ids=["RetryInfo", "Retry-After"])
def test_the_servers_retry_delay_is_waited_for(fake_gemini, reply):
    fake_gemini.script(reply)
    stats = EscalationStats()
    started = time.monotonic()
    with escalator(fake_gemini, stats=stats) as esc:  # its own backoff: under 0.05 s
        (decision,) = esc.resolve(tickets("charged twice"))
    assert time.monotonic() - started >= 0.8
    assert decision.decided_by == "llm"
    assert stats.llm_requests == {"ok": 1, "retried": 1}


def test_retry_after_is_read_as_seconds_or_as_an_http_date():
    assert retry_after_seconds("7") == 7.0
    in_a_minute = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 <= retry_after_seconds(in_a_minute) <= 60
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # past: at once
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_a_retry_delay_beyond_the_cap_gives_up_instead_of_holding_the_run(fake_gemini):
    fake_gemini.script(error(429, retry_delay="900s"))
    stats = EscalationStats()
    started = time.monotonic()
    with escalator(fake_gemini, stats=stats,
                   retry=RetryPolicy(attempts=3, initial_delay=0.01, max_server_delay=5)) as esc:
        (decision,) = esc.resolve(tickets("charged twice"))
    assert time.monotonic() - started < 5
    assert fake_gemini.count == 1 and stats.llm_requests == {"error": 1}
    assert_fell_back(decision)


def test_a_retry_delay_still_counts_against_the_budget(fake_gemini):
    fake_gemini.script(error(429, retry_delay="0.1s"), error(429, retry_delay="0.1s"))
    stats = EscalationStats()
    with escalator(fake_gemini, stats=stats, max_calls=2) as esc:
        (decision,) = esc.resolve(tickets("charged twice"))
    assert fake_gemini.count == 2
    assert stats.llm_requests == {"budget_exhausted": 1, "retried": 1}
    assert_fell_back(decision)


def test_safety_settings_block_only_high_harm_in_the_four_adjustable_categories(fake_gemini):
    with escalator(fake_gemini) as esc:
        esc.resolve(tickets("you useless idiots, I will come down there"))
    (seen,) = fake_gemini.requests
    assert sorted((s["category"], s["threshold"]) for s in seen.body["safetySettings"]) == [
        ("HARM_CATEGORY_DANGEROUS_CONTENT", "BLOCK_ONLY_HIGH"),
        ("HARM_CATEGORY_HARASSMENT", "BLOCK_ONLY_HIGH"),
        ("HARM_CATEGORY_HATE_SPEECH", "BLOCK_ONLY_HIGH"),
        ("HARM_CATEGORY_SEXUALLY_EXPLICIT", "BLOCK_ONLY_HIGH")]


def test_the_safety_threshold_comes_from_the_environment(fake_gemini, monkeypatch):
    monkeypatch.setenv("TICKETCLF_GEMINI_SAFETY_THRESHOLD", "block_none")
    with escalator(fake_gemini) as esc:
        esc.resolve(tickets("charged twice"))
    (seen,) = fake_gemini.requests
    assert {s["threshold"] for s in seen.body["safetySettings"]} == {"BLOCK_NONE"}


def test_an_unknown_safety_threshold_is_a_configuration_error(cli, tmp_path, gemini_env,
                                                              monkeypatch):
    monkeypatch.setenv("TICKETCLF_GEMINI_SAFETY_THRESHOLD", "BLOCK_SOME")
    r = cli("classify", "samples/tickets.csv", "-o", tmp_path / "out.csv", "--workers", "1",
            "--llm-threshold", "1.0")
    assert r.code == 78, r
    assert "BLOCK_ONLY_HIGH" in r.stderr  # the hint names the valid ones
    assert gemini_env.count == 0


def test_cached_input_tokens_are_counted_and_priced_at_the_cached_rate(fake_gemini):
    fake_gemini.answer_for = lambda _text: answer_body(input_tokens=1000, output_tokens=20,
                                                       cached_tokens=800)
    stats = EscalationStats()
    with escalator(fake_gemini, stats=stats, prices=None, retry=FAST_RETRY) as esc:
        esc.resolve(tickets("charged twice"))
    assert stats.llm_tokens == {"input": 1000, "output": 20, "cached": 800}
    assert stats.llm_cost_usd == pytest.approx((200 * 0.75 + 800 * 0.075 + 20 * 3.75) / 1e6)
