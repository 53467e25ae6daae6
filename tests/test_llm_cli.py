"""`ticketclf classify` with LLM escalation, end to end against the fake Gemini server:
switching it on and off, the key, the cache and resume, the budget, dry runs, failures,
and the `cache` and `doctor` commands.

Escalation is made predictable with --llm-threshold 1.0 (every ticket is uncertain) or 0
(none is), so no test depends on what the shipped model predicts.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import SAMPLES, ticketclf_cmd, write_csv
from .fake_gemini import API_KEY, Reply, answer_body, error

TEXTS = [
    "no signal at all in Leeds since this morning, is there an outage?",
    "I was charged twice for November, please refund the second payment",
    "router keeps dropping wifi every evening",
    "please cancel my contract, I am moving abroad",
    "thank you Zara in the Brighton store, brilliant help",
]


@pytest.fixture
def tickets(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "tickets.csv", ["ticket_id", "text"],
                     [[f"T-{i}", text] for i, text in enumerate(TEXTS)])


# What samples/tickets.csv holds that must never leave the machine.
PII_IN_SAMPLES = ["4111 1111 1111 1111", "7700 900123", "7700 900456", "7700 900789",
                  "010-4477", "010-2231", "496 0123", "GB82 WEST", "ACC-400", "40012345",
                  "example.com", "22 Example Road", "BS1 4XX", "CH1 2XX"]


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def without_cached(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k != "cached"} for row in rows]


def classify(cli, src: Path, out: Path, *extra: str):
    return cli("classify", src, "-o", out, "--quiet", "--workers", "1", *extra)


def test_llm_without_a_key_is_a_configuration_error(cli, tickets, tmp_path):
    r = classify(cli, tickets, tmp_path / "out.csv", "--llm")
    assert r.code == 78, r
    assert "GEMINI_API_KEY" in r.stderr
    assert not (tmp_path / "out.csv").exists()


def test_escalation_is_off_by_default_without_a_key(cli, tickets, tmp_path, fake_gemini,
                                                      monkeypatch):
    monkeypatch.setenv("TICKETCLF_GEMINI_BASE_URL", fake_gemini.url)
    r = classify(cli, tickets, tmp_path / "out.csv", "--llm-threshold", "1.0")
    assert r.code == 0, r
    rows = read_rows(tmp_path / "out.csv")
    assert {row["decided_by"] for row in rows} == {"model"}
    assert all(row["needs_review"] == "true" for row in rows)
    assert fake_gemini.count == 0


def test_a_key_turns_escalation_on_and_a_rerun_makes_zero_requests(cli, tickets, tmp_path,
                                                                    gemini_env):
    gemini_env.answer_for = lambda _text: answer_body("NETWORK", "CRITICAL", 0.93)
    r = classify(cli, tickets, tmp_path / "first.csv", "--llm-threshold", "1.0")
    assert r.code == 0, r
    first = read_rows(tmp_path / "first.csv")
    assert [(row["category"], row["sentiment"], row["decided_by"], row["cached"],
             row["needs_review"]) for row in first] == [
        ("NETWORK", "CRITICAL", "llm", "false", "false")] * len(TEXTS)
    assert first[0]["category_confidence"] == "0.93"
    assert first[0]["priority"] == "URGENT"  # priority follows the final labels
    assert gemini_env.count == len(TEXTS)

    r = classify(cli, tickets, tmp_path / "second.csv", "--llm-threshold", "1.0")
    assert r.code == 0, r
    second = read_rows(tmp_path / "second.csv")
    assert gemini_env.count == len(TEXTS)
    assert {(row["decided_by"], row["cached"]) for row in second} == {("llm", "true")}
    assert without_cached(second) == without_cached(first)


def test_threshold_zero_sends_nothing(cli, tickets, tmp_path, gemini_env):
    r = classify(cli, tickets, tmp_path / "out.csv", "--llm-threshold", "0")
    assert r.code == 0, r
    assert gemini_env.count == 0
    assert {row["decided_by"] for row in read_rows(tmp_path / "out.csv")} == {"model"}


def test_no_llm_sends_nothing_even_with_a_key(cli, tickets, tmp_path, gemini_env):
    r = classify(cli, tickets, tmp_path / "out.csv", "--llm-threshold", "1.0", "--no-llm")
    assert r.code == 0, r
    assert gemini_env.count == 0


def test_key_from_a_mounted_file(cli, tickets, tmp_path, fake_gemini, monkeypatch):
    (tmp_path / "key").write_text(API_KEY + "\n")
    monkeypatch.setenv("GEMINI_API_KEY_FILE", str(tmp_path / "key"))
    monkeypatch.setenv("TICKETCLF_GEMINI_BASE_URL", fake_gemini.url)
    r = classify(cli, tickets, tmp_path / "out.csv", "--llm-threshold", "1.0")
    assert r.code == 0, r
    assert {seen.headers["x-goog-api-key"] for seen in fake_gemini.requests} == {API_KEY}


def test_the_key_reaches_the_server_but_never_the_output_or_the_logs(cli, tickets, tmp_path,
                                                                      gemini_env):
    gemini_env.script(error(503), Reply(body=answer_body(category="NOPE")), error(400))
    r = cli("classify", tickets, "-o", tmp_path / "out.csv", "--workers", "1",
            "--llm-threshold", "1.0", "--log-format", "json", "--log-level", "DEBUG")
    assert r.code == 0, r
    assert all(seen.headers["x-goog-api-key"] == API_KEY for seen in gemini_env.requests)
    for text in (r.stdout, r.stderr, (tmp_path / "out.csv").read_text(),
                 (tmp_path / "out.csv.rejects.jsonl").read_text()):
        assert API_KEY not in text
    # the debug log speaks of tickets by id and hash only
    logged = [json.loads(line) for line in r.stderr.splitlines() if line.startswith("{")]
    escalated = [rec for rec in logged if rec.get("event") == "ticket_escalated"]
    assert {rec["ticket_id"] for rec in escalated} == {f"T-{i}" for i in range(len(TEXTS))}
    for text in TEXTS:
        assert text not in r.stderr
    doctor = cli("doctor")
    assert doctor.code == 0, doctor
    assert "gemini key: configured (GEMINI_API_KEY)" in doctor.stdout
    assert API_KEY not in doctor.stdout + doctor.stderr


def test_the_summary_shows_requests_tokens_and_cost(cli, tickets, tmp_path, gemini_env):
    gemini_env.answer_for = lambda _text: answer_body(input_tokens=1000, output_tokens=100)
    r = cli("classify", tickets, "-o", tmp_path / "out.csv", "--workers", "1",
            "--llm-threshold", "1.0", "--llm-input-price", "1", "--llm-output-price", "10")
    assert r.code == 0, r
    assert "ok 5" in r.stderr
    assert "5,000 input, 500 output, ~$0.0100" in r.stderr  # 5k × $1/M + 500 × $10/M


def test_no_personal_data_from_the_sample_tickets_reaches_the_server(cli, tmp_path, gemini_env):
    r = classify(cli, SAMPLES / "tickets.csv", tmp_path / "out.csv", "--llm-threshold", "1.0")
    assert r.code == 0, r
    bodies = "\n".join(seen.raw.decode() for seen in gemini_env.requests)
    assert gemini_env.count == len(read_rows(tmp_path / "out.csv"))
    for pii in PII_IN_SAMPLES:
        assert pii not in bodies, pii


def test_budget_caps_the_requests_and_every_row_is_written(cli, tickets, tmp_path, gemini_env):
    r = classify(cli, tickets, tmp_path / "out.csv", "--llm-threshold", "1.0",
                 "--max-llm-calls", "2")
    assert r.code == 0, r
    rows = read_rows(tmp_path / "out.csv")
    assert gemini_env.count == 2
    assert len(rows) == len(TEXTS)
    assert sum(row["decided_by"] == "llm" for row in rows) == 2
    assert all(row["needs_review"] == "true" for row in rows if row["decided_by"] == "model")


def test_a_failing_service_never_fails_the_run(cli, tickets, tmp_path, gemini_env):
    gemini_env.script(*[error(403)] * 10)
    r = cli("classify", tickets, "-o", tmp_path / "out.csv", "--workers", "1",
            "--llm-threshold", "1.0", "--llm-concurrency", "1")
    assert r.code == 0, r
    rows = read_rows(tmp_path / "out.csv")
    assert [row["ticket_id"] for row in rows] == [f"T-{i}" for i in range(len(TEXTS))]
    assert all(row["decided_by"] == "model" and row["needs_review"] == "true" for row in rows)
    assert "HTTP 403" in r.stderr  # said once, with the reason


def test_no_cache_asks_again(cli, tickets, tmp_path, gemini_env):
    for name in ("a.csv", "b.csv"):
        r = classify(cli, tickets, tmp_path / name, "--llm-threshold", "1.0", "--no-cache")
        assert r.code == 0, r
    assert gemini_env.count == 2 * len(TEXTS)
    assert not (tmp_path / "cache").exists()


def test_cache_dir_option_overrides_the_environment(cli, tickets, tmp_path, gemini_env):
    r = classify(cli, tickets, tmp_path / "out.csv", "--llm-threshold", "1.0",
                 "--cache-dir", tmp_path / "elsewhere")
    assert r.code == 0, r
    assert (tmp_path / "elsewhere").is_dir() and not (tmp_path / "cache").exists()


def test_dry_run_estimates_without_a_key_calling_or_writing(cli, tickets, tmp_path, fake_gemini,
                                                            monkeypatch):
    monkeypatch.setenv("TICKETCLF_GEMINI_BASE_URL", fake_gemini.url)
    r = cli("classify", tickets, "-o", tmp_path / "out.csv", "--workers", "1", "--quiet",
            "--llm-threshold", "1.0", "--dry-run", "--max-llm-calls", "3")
    assert r.code == 0, r
    assert fake_gemini.count == 0
    assert not (tmp_path / "out.csv").exists()
    assert not (tmp_path / "out.csv.rejects.jsonl").exists()
    assert "5 of 5 tickets are uncertain; 0 answered from the cache, 3 would be sent" in r.stdout
    assert "2 over --max-llm-calls" in r.stdout
    assert "estimated cost: $0.00" in r.stdout


def test_dry_run_counts_cached_answers_as_free(cli, tickets, tmp_path, gemini_env):
    assert classify(cli, tickets, tmp_path / "out.csv", "--llm-threshold", "1.0").code == 0
    r = classify(cli, tickets, tmp_path / "again.csv", "--llm-threshold", "1.0", "--dry-run")
    assert r.code == 0, r
    assert "5 answered from the cache, 0 would be sent" in r.stdout
    assert gemini_env.count == len(TEXTS)


def test_dry_run_with_no_llm_is_a_usage_error(cli, tickets, tmp_path):
    r = classify(cli, tickets, tmp_path / "out.csv", "--dry-run", "--no-llm")
    assert r.code == 2, r


def test_cache_stats_and_clear(cli, tickets, tmp_path, gemini_env):
    assert classify(cli, tickets, tmp_path / "out.csv", "--llm-threshold", "1.0").code == 0
    stats = cli("cache", "stats")
    assert stats.code == 0, stats
    assert f"cache ok: {tmp_path / 'cache'} (5 answers" in stats.stdout
    assert ":gemini-3.8-flash: 5" in stats.stdout
    cleared = cli("cache", "clear")
    assert cleared.code == 0, cleared
    assert "5 answers removed" in cleared.stdout
    assert "(0 answers" in cli("cache", "stats").stdout
    assert classify(cli, tickets, tmp_path / "out.csv", "--llm-threshold", "1.0").code == 0
    assert gemini_env.count == 2 * len(TEXTS)


def test_doctor_says_when_no_key_is_configured_and_checks_the_cache(cli, tmp_path):
    r = cli("doctor", "--cache-dir", tmp_path / "c")
    assert r.code == 0, r
    assert "gemini key: not configured" in r.stdout
    assert f"cache ok: {tmp_path / 'c'} (0 answers" in r.stdout


def test_doctor_fails_on_an_unusable_cache(cli, tmp_path):
    (tmp_path / "c").write_text("a file where the cache directory should be")
    r = cli("doctor", "--cache-dir", tmp_path / "c")
    assert r.code == 78, r
    assert "cannot use the cache" in r.stderr


def test_a_killed_run_resumes_without_paying_twice(tmp_path, fake_gemini):
    """SIGTERM mid-run: exit 143, no output; the rerun asks only for what was not answered."""
    n = 12
    src = write_csv(tmp_path / "in.csv", ["ticket_id", "text"],
                    [[f"T-{i}", f"ticket number {i}: my broadband is down"] for i in range(n)])
    fake_gemini.script(*[Reply(delay=0.3)] * n)
    env = {**os.environ, "GEMINI_API_KEY": API_KEY, "TICKETCLF_GEMINI_BASE_URL": fake_gemini.url,
           "TICKETCLF_CACHE_DIR": str(tmp_path / "cache")}
    args = ticketclf_cmd("classify", src, "-o", tmp_path / "out.csv", "--workers", "1", "--quiet",
                         "--llm-threshold", "1.0", "--llm-concurrency", "1")
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while fake_gemini.count < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.1)  # mid-request: the answers before it are cached by now
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 143
    finally:
        proc.kill()
    assert not (tmp_path / "out.csv").exists()
    first_run = fake_gemini.count
    rerun = subprocess.run(args, env=env, capture_output=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr.decode()
    rows = read_rows(tmp_path / "out.csv")
    assert len(rows) == n and {row["decided_by"] for row in rows} == {"llm"}
    asked = [seen.ticket_text for seen in fake_gemini.requests]
    assert len(set(asked)) == n
    # at most the one request in flight at the kill is asked again
    assert fake_gemini.count - first_run <= n - first_run + 1
    assert sum(row["cached"] == "true" for row in rows) >= first_run - 1
