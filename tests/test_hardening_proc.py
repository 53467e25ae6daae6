"""Hardening of processes, models and LLM answers (issue 16, items 6, 7, 13, 15-18): killed
and stopped workers, --workers bounds, hand-edited cards, rare labels, text the model has no
features for, and LLM confidences that are not probabilities. Real processes, real files."""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ticketclf import interrupts, pipeline
from ticketclf.errors import Interrupted
from ticketclf.llm import (
    EscalationSettings,
    EscalationStats,
    LLMConfig,
    RetryPolicy,
    open_escalator,
)
from ticketclf.model import load_model
from ticketclf.model.store import CARD_FILE
from ticketclf.schema import Prediction, Ticket

from .conftest import SHIPPED_MODEL, corpus_rows, ticketclf_cmd, write_csv
from .fake_gemini import API_KEY, Reply, text_body

CPUS = len(os.sched_getaffinity(0))
needs_two_cpus = pytest.mark.skipif(CPUS < 2, reason="two model workers need two CPUs")


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def children(pid: int) -> list[int]:
    """Direct child processes of `pid`, from /proc (every thread's children file)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # the thread ended meanwhile
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start_two_worker_run(tmp_path: Path, rows: int = 150_000) -> tuple[subprocess.Popen, Path,
                                                                       list[int]]:
    """A real classify process on a generated input, once both its workers are running."""
    corpus = corpus_rows(40)
    src = write_csv(tmp_path / "big.csv", ["ticket_id", "text"],
                    [[f"T{i}", corpus[i % len(corpus)][0]] for i in range(rows)])
    out = tmp_path / "out.csv"
    proc = subprocess.Popen(ticketclf_cmd("classify", src, "-o", out, "-q", "--workers", "2",
                                          "--batch-size", "500", "--log-level", "WARNING"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while len(workers := children(proc.pid)) < 2:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "the workers never started"
        time.sleep(0.05)
    return proc, out, workers


def assert_nothing_written(tmp_path: Path, out: Path) -> None:
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.csv.")]


@needs_two_cpus
def test_a_worker_killed_mid_run_fails_within_seconds_with_exit_70_and_no_output(tmp_path):
    proc, out, workers = start_two_worker_run(tmp_path)
    time.sleep(0.5)  # mid-run: batches in flight
    started = time.monotonic()
    os.kill(workers[0], signal.SIGKILL)  # what the OOM killer does
    _, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - started < 30
    assert proc.returncode == 70, stderr[-2000:]
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 2, lines  # the error and its hint
    assert lines[0] == f"error: model worker {workers[0]} was killed by SIGKILL during the " \
                       "run; nothing was written"
    assert b"Traceback" not in stderr
    assert_nothing_written(tmp_path, out)
    assert not any(alive(w) for w in workers)


@needs_two_cpus
def test_sigterm_ends_a_run_promptly_while_a_worker_is_hung(tmp_path):
    proc, out, workers = start_two_worker_run(tmp_path)
    os.kill(workers[1], signal.SIGSTOP)  # a worker that never answers again
    time.sleep(1.0)
    started = time.monotonic()
    proc.terminate()
    _, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - started < 10
    assert proc.returncode == 143, stderr[-2000:]
    assert_nothing_written(tmp_path, out)
    deadline = time.monotonic() + 5
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(w) for w in workers), "a worker outlived its run"


def test_workers_are_lowered_to_the_cpu_count_with_one_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="ticketclf.pipeline"):
        assert pipeline.bounded_workers(1000) == CPUS
        assert pipeline.bounded_workers(CPUS) == CPUS
    (record,) = caplog.records
    assert record.getMessage() == f"workers lowered from 1000 to {CPUS}: {CPUS} CPUs"


def test_workers_are_lowered_to_what_the_available_memory_holds(caplog):
    available = pipeline.available_memory()
    assert available is not None and available > 0
    with caplog.at_level(logging.WARNING, logger="ticketclf.pipeline"):
        assert pipeline.bounded_workers(1000, per_worker=available) == 1
    (record,) = caplog.records
    assert "GiB available at" in record.getMessage()


def test_classify_with_a_thousand_workers_runs_on_at_most_the_cpus_and_says_so(tmp_path):
    texts = [[r[0]] for r in corpus_rows(20)]
    src = write_csv(tmp_path / "in.csv", ["text"], texts)
    out = tmp_path / "out.csv"
    r = subprocess.run(ticketclf_cmd("classify", src, "-o", out, "-q", "--workers", "1000",
                                     "--batch-size", "20", "--log-level", "WARNING"),
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    warnings = [json.loads(line) for line in r.stderr.decode().splitlines()
                if '"workers_lowered"' in line]
    assert [(w["requested"], w["workers"]) for w in warnings] == [(1000, CPUS)]
    assert len(read_rows(out)) == len(texts)


# --- the model card --------------------------------------------------------------------

@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(SHIPPED_MODEL, tmp_path / "model"))


def edit_card(model: Path, **changes: object) -> None:
    card = json.loads((model / CARD_FILE).read_text())
    card["thresholds"].update(changes)
    (model / CARD_FILE).write_text(json.dumps(card, indent=2))


def test_a_non_numeric_threshold_in_the_card_exits_78(cli, model_copy, tmp_path):
    edit_card(model_copy, category="high")
    r = cli("classify", SHIPPED_MODEL.parent.parent / "samples" / "tickets.csv",
            "-o", tmp_path / "out.csv", "-q", "--model", model_copy)
    assert r.code == 78, r
    assert "threshold for 'category' is not a number between 0 and 1" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_hand_edited_card_is_refused_with_78_and_a_hint(cli, model_copy, tmp_path):
    edit_card(model_copy, category=0.01)  # a valid number: only the seal can tell
    r = cli("classify", SHIPPED_MODEL.parent.parent / "samples" / "tickets.csv",
            "-o", tmp_path / "out.csv", "-q", "--model", model_copy)
    assert r.code == 78, r
    assert "was changed after training" in r.stderr
    assert "hint: retrain, or restore the card" in r.stderr
    assert not (tmp_path / "out.csv").exists()
    assert cli("doctor", "--model", model_copy).code == 78


def test_the_shipped_card_passes_its_own_seal():
    assert load_model(SHIPPED_MODEL).version


# --- rare labels in training data ------------------------------------------------------

NAMES = ("billing", "network", "technical")


def test_rare_labels_are_dropped_with_a_warning_naming_them_and_recorded_in_the_card(
        cli, tmp_path):
    rows = corpus_rows(12, NAMES) + [["please cancel my contract", "CANCELLATION", "NEGATIVE"]]
    src = write_csv(tmp_path / "train.csv", ["text", "category", "sentiment"], rows)
    r = cli("train", src, "-o", tmp_path / "m")
    assert r.code == 0, r
    assert "category: dropped labels with fewer than 8 examples: CANCELLATION (1)" in r.stderr
    card = json.loads((tmp_path / "m" / CARD_FILE).read_text())
    assert card["training_data"]["dropped_labels"]["category"] == {"CANCELLATION": 1}
    assert card["labels"]["category"] == ["BILLING", "NETWORK", "TECHNICAL"]


def test_training_with_fewer_than_two_labels_left_exits_65(cli, tmp_path):
    rows = [r[:2] for r in corpus_rows(12, ("billing",))] + [["no signal at all", "NETWORK"]]
    src = write_csv(tmp_path / "train.csv", ["text", "category"], rows)
    r = cli("train", src, "-o", tmp_path / "m")
    assert r.code == 65, r
    assert "category needs at least two labels with enough examples" in r.stderr


def test_min_examples_below_what_the_folds_need_is_a_usage_error(cli, tmp_path):
    src = write_csv(tmp_path / "train.csv", ["text", "category"],
                    [r[:2] for r in corpus_rows(12, NAMES)])
    r = cli("train", src, "-o", tmp_path / "m", "--min-examples", "2")
    assert r.code == 2, r
    assert "below the 8 examples a label needs for 3 cross-validation folds" in r.stderr


# --- text without any known feature ----------------------------------------------------

NO_FEATURES = ["أريد إلغاء اشتراكي فوراً", "我的账单有问题，请帮忙", "😡😡😡 🔥📵",
               "\u200b\u200c\u200d\u2060"]
KNOWN = "I was charged twice for my bill this month, please refund me"
# Low enough that any ticket with known words is confident, whatever the recipe: only the
# featureless ones must fall under it.
LOW = "0.05"


@pytest.fixture
def unknown_scripts(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "in.csv", ["ticket_id", "text"],
                     [[f"T{i}", t] for i, t in enumerate([*NO_FEATURES, KNOWN])])


def test_text_without_known_features_is_flagged_for_review_with_no_confidence(
        cli, unknown_scripts, tmp_path):
    out = tmp_path / "out.csv"
    r = cli("classify", unknown_scripts, "-o", out, "-q", "--workers", "1", "--no-llm",
            "--llm-threshold", LOW)
    assert r.code == 0, r
    rows = read_rows(out)
    for row in rows[:-1]:
        assert (row["category_confidence"], row["sentiment_confidence"],
                row["needs_review"]) == ("0.0", "0.0", "true"), row["ticket_id"]
    assert rows[-1]["category"] == "BILLING" and rows[-1]["needs_review"] == "false"


def test_text_without_known_features_is_escalated_when_the_llm_is_on(
        cli, unknown_scripts, tmp_path, gemini_env):
    out = tmp_path / "out.csv"
    r = cli("classify", unknown_scripts, "-o", out, "-q", "--workers", "1", "--llm",
            "--llm-threshold", LOW)
    assert r.code == 0, r
    decided = {row["ticket_id"]: row["decided_by"] for row in read_rows(out)}
    assert decided == {"T0": "llm", "T1": "llm", "T2": "llm", "T3": "llm", "T4": "model"}


# --- LLM confidences that are not probabilities ----------------------------------------

LOCAL = Prediction({"category": "GENERAL", "sentiment": "NEUTRAL"},
                   {"category": 0.41, "sentiment": 0.38})


@pytest.mark.parametrize("confidence", ["NaN", "Infinity", "7.5", "-1", "1.0000001"])
def test_an_llm_confidence_that_is_not_a_probability_is_an_invalid_answer(
        fake_gemini, tmp_path, confidence):
    fake_gemini.script(Reply(body=text_body(
        f'{{"category": "BILLING", "sentiment": "NEUTRAL", "confidence": {confidence}}}')))
    stats = EscalationStats()
    config = LLMConfig(api_key=API_KEY, model="gemini-test", base_url=fake_gemini.url,
                       timeout_seconds=5.0, cache_dir=tmp_path / "cache",
                       settings=EscalationSettings(retry=RetryPolicy(attempts=1)))
    with open_escalator(config, stats) as esc:
        (decision,) = esc.resolve([(Ticket("t.csv", 2, "T-0", "my bill is wrong", {}), LOCAL)])
    assert stats.llm_requests == {"invalid": 1}
    assert (decision.prediction, decision.decided_by, decision.needs_review) == (
        LOCAL, "model", True)


def test_an_llm_confidence_of_exactly_0_or_1_is_accepted(fake_gemini):
    fake_gemini.script(Reply(body=text_body(
        '{"category": "BILLING", "sentiment": "NEUTRAL", "confidence": 1}')))
    config = LLMConfig(api_key=API_KEY, model="gemini-test", base_url=fake_gemini.url,
                       timeout_seconds=5.0, cache_dir=None)
    with open_escalator(config, EscalationStats()) as esc:
        (decision,) = esc.resolve([(Ticket("t.csv", 2, "T-0", "my bill is wrong", {}), LOCAL)])
    assert (decision.decided_by, decision.prediction.confidence("category")) == ("llm", 1.0)


@pytest.mark.parametrize("to_another_thread", [False, True], ids=["process", "other-thread"])
def test_a_sigterm_that_arrives_while_a_worker_forks_is_not_lost(to_another_thread):
    """Python runs a signal's handler at the next Python code. The signals are blocked across
    the fork, but only in this thread: with another thread alive (the LLM's, a fake server's)
    the kernel may take the signal there, and the handler then runs inside an at-fork
    callback, where CPython swallows what it raises and skips the rest of the callback: it
    left logging's lock held, and the next test's LLM thread hung on it. The signal must end
    the run when the fork is done, and nothing may stay locked. Here the signal arrives in the
    fork itself, from an at-fork callback of the test's (pytest fails the test on anything
    the callbacks swallowed)."""
    import threading

    armed = [True]
    other_done = threading.Event()
    other = threading.Thread(target=other_done.wait, daemon=True)
    other.start()

    def signal_during_the_fork() -> None:
        if armed[0]:
            armed[0] = False
            if to_another_thread:  # what the kernel may pick: a thread that does not block it
                signal.pthread_kill(other.ident, signal.SIGTERM)  # type: ignore[arg-type]
            else:
                os.kill(os.getpid(), signal.SIGTERM)

    os.register_at_fork(before=signal_during_the_fork)
    scorer = pipeline.Scorer.of(load_model(SHIPPED_MODEL))
    try:
        with interrupts.signals_raise(), pytest.raises(Interrupted):
            pipeline._fork_worker(scorer)
    finally:
        armed[0] = False
        other_done.set()
        other.join(5)
    logger = threading.Thread(target=logging.getLogger("ticketclf.test").info, args=("x",))
    logger.start()
    logger.join(5)
    assert not logger.is_alive(), "logging's lock is still held"
