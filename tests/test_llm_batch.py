"""Batch mode (`--llm-mode batch`) against the fake Gemini Batch API, through the real
google-genai SDK: a job that completes, one that expires, one that finishes after --llm-wait
and is collected by the next run, what is remembered on disk, and what batch mode refuses."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from ticketclf.config import SHIPPED_MODEL
from ticketclf.io.readers import ReadOptions
from ticketclf.llm import EscalationStats, LLMConfig, open_escalator
from ticketclf.llm.batch import JOBS_FILE, run_batch
from ticketclf.model import load_model
from ticketclf.runner import ClassifyJob

from .conftest import SAMPLES
from .fake_gemini import API_KEY, FakeGemini, answer_body
from .test_llm_cli import PII_IN_SAMPLES

TICKETS = SAMPLES / "tickets.csv"


def rows_of(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def creates(server: FakeGemini) -> int:
    return sum(seen.path.endswith(":batchGenerateContent") for seen in server.requests)


def batch_run(cli, out: Path, *extra: str):
    return cli("classify", TICKETS, "-o", out, "--workers", "1", "--llm-threshold", "1.0",
               "--llm-mode", "batch", *extra)


def test_a_completed_job_answers_every_uncertain_ticket_at_half_the_price(cli, tmp_path,
                                                                          gemini_env):
    gemini_env.answer_for = lambda _text: answer_body("NETWORK", "NEGATIVE", 0.9,
                                                      input_tokens=1000, output_tokens=100)
    r = batch_run(cli, tmp_path / "out.csv")
    assert r.code == 0, r
    rows = rows_of(tmp_path / "out.csv")
    assert {(row["category"], row["decided_by"], row["cached"], row["needs_review"])
            for row in rows} == {("NETWORK", "llm", "false", "false")}  # the job's, not cached
    assert not gemini_env.generate_requests  # no online request at all
    assert creates(gemini_env) == 1
    (job,) = gemini_env.batches.values()
    assert len(job.requests) == len(rows)
    n = len(rows)
    online = (n * 1000 * 0.75 + n * 100 * 3.75) / 1e6
    assert f"{n * 1000:,} input, {n * 100:,} output, ~${online / 2:.4f}" in r.stderr
    assert not (tmp_path / "cache" / JOBS_FILE).exists()  # collected: nothing to remember
    # each inline request is the online request: system instruction, schema, safety settings
    request = job.requests[0]["request"]
    assert "untrusted" in request["systemInstruction"]["parts"][0]["text"]
    assert request["generationConfig"]["responseJsonSchema"]["properties"]["category"]["enum"]
    assert {s["threshold"] for s in request["safetySettings"]} == {"BLOCK_ONLY_HIGH"}
    assert all(seen.headers["x-goog-api-key"] == API_KEY for seen in gemini_env.requests)


def test_the_batch_job_carries_no_personal_data(cli, tmp_path, gemini_env):
    assert batch_run(cli, tmp_path / "out.csv").code == 0
    bodies = "\n".join(seen.raw.decode() for seen in gemini_env.requests)
    for pii in PII_IN_SAMPLES:
        assert pii not in bodies, pii


def test_a_rerun_is_answered_from_the_cache_with_no_new_job(cli, tmp_path, gemini_env):
    assert batch_run(cli, tmp_path / "first.csv").code == 0
    r = batch_run(cli, tmp_path / "second.csv")
    assert r.code == 0, r
    assert creates(gemini_env) == 1
    assert {row["cached"] for row in rows_of(tmp_path / "second.csv")} == {"true"}


def test_an_expired_job_is_forgotten_with_a_warning_and_the_tickets_need_review(
        cli, tmp_path, gemini_env):
    gemini_env.batch_final_state = "BATCH_STATE_EXPIRED"
    r = batch_run(cli, tmp_path / "out.csv")
    assert r.code == 0, r
    assert "ended without answers (JOB_STATE_EXPIRED)" in r.stderr
    rows = rows_of(tmp_path / "out.csv")
    assert {(row["decided_by"], row["needs_review"]) for row in rows} == {("model", "true")}
    assert not (tmp_path / "cache" / JOBS_FILE).exists()
    gemini_env.batch_final_state = "BATCH_STATE_SUCCEEDED"
    assert batch_run(cli, tmp_path / "again.csv").code == 0
    assert creates(gemini_env) == 2  # asked again: the expired job answered nothing
    assert {row["decided_by"] for row in rows_of(tmp_path / "again.csv")} == {"llm"}


def test_a_job_finishing_after_the_wait_is_collected_by_the_next_run_without_paying_twice(
        cli, tmp_path, gemini_env):
    gemini_env.batch_polls = 1_000  # still running whenever this run looks
    r = batch_run(cli, tmp_path / "first.csv", "--llm-wait", "0")
    assert r.code == 0, r
    assert "still running after --llm-wait" in r.stderr
    assert {(row["decided_by"], row["needs_review"])
            for row in rows_of(tmp_path / "first.csv")} == {("model", "true")}
    remembered = tmp_path / "cache" / JOBS_FILE
    assert remembered.stat().st_mode & 0o777 == 0o600
    (job,) = json.loads(remembered.read_text())["jobs"]
    assert job["name"] == next(iter(gemini_env.batches))
    assert "refund" not in remembered.read_text().lower()  # keys are hashes, never text

    r = batch_run(cli, tmp_path / "meanwhile.csv", "--llm-wait", "0")
    assert r.code == 0, r
    assert creates(gemini_env) == 1  # its tickets are in flight: not sent again

    gemini_env.batches[job["name"]].polls_left = 0  # the job finishes overnight
    r = batch_run(cli, tmp_path / "next.csv", "--llm-wait", "0")
    assert r.code == 0, r
    assert creates(gemini_env) == 1 and not gemini_env.generate_requests
    assert {(row["decided_by"], row["needs_review"])
            for row in rows_of(tmp_path / "next.csv")} == {("llm", "false")}
    assert not remembered.exists()


def test_polling_waits_for_a_job_that_takes_a_few_polls(fake_gemini, tmp_path):
    fake_gemini.batch_polls = 3
    config = LLMConfig(api_key=API_KEY, base_url=fake_gemini.url, cache_dir=tmp_path / "cache")
    stats = EscalationStats()
    job = ClassifyJob(inputs=[str(TICKETS)], output=str(tmp_path / "out.csv"),
                      read=ReadOptions(), threshold=1.0)
    with open_escalator(config, stats) as escalator:
        report = run_batch(job, load_model(SHIPPED_MODEL), SHIPPED_MODEL, escalator,
                           wait_seconds=30, poll_seconds=0.05)
    gets = [seen for seen in fake_gemini.requests if seen.method == "GET"]
    assert len(gets) == 4  # three say running, the fourth brings the answers
    assert report.decided_by == {"llm": report.classified}
    assert stats.llm_requests == {"ok": report.classified, "batch_jobs": 1}
    assert stats.cache_lookups == {"miss": report.classified}


def test_max_llm_calls_caps_the_job_and_the_rest_need_review(cli, tmp_path, gemini_env):
    r = batch_run(cli, tmp_path / "out.csv", "--max-llm-calls", "3")
    assert r.code == 0, r
    (job,) = gemini_env.batches.values()
    assert len(job.requests) == 3
    assert sum(row["decided_by"] == "llm" for row in rows_of(tmp_path / "out.csv")) == 3


@pytest.mark.parametrize(("extra", "message"), [
    (["--llm-backend", "openai", "--llm-base-url", "http://127.0.0.1:9/v1"], "batch API"),
    (["--no-cache"], "through the cache"),
])
def test_batch_mode_refuses_what_it_cannot_do(cli, tmp_path, gemini_env, extra, message):
    r = batch_run(cli, tmp_path / "out.csv", *extra)
    assert r.code == 2, r
    assert message in r.stderr
    assert gemini_env.count == 0


def test_batch_mode_refuses_stdin(cli, tmp_path, gemini_env):
    r = cli("classify", "-", "--input-format", "csv", "-o", tmp_path / "out.csv",
            "--llm-mode", "batch", input="ticket_id,text\nT-1,charged twice\n")
    assert r.code == 2, r
    assert "cannot read stdin" in r.stderr
