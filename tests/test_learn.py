"""The learning loop end to end on small real data: the cache keeps what learning needs
(redacted text only), `ticketclf learn` retrains on BASE's shipped training set plus cached
answers, the gate promotes or refuses (exit 3, current model untouched), rollback, retention.

The base model here is small (40 hand-written tickets per category, no cross-validation), so
each learn takes seconds; the fake Gemini answers from a table of texts."""

from __future__ import annotations

import csv
import gzip
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ticketclf.cache import AnswerCache
from ticketclf.errors import ExitCode
from ticketclf.learn import HOLDOUT_FILE, TRAINING_FILE, Row, write_rows
from ticketclf.model import load_model
from ticketclf.model.train import TrainSpec, train

from .conftest import CORPUS, SHIPPED_MODEL, write_csv
from .fake_gemini import FakeGemini, answer_body

# A made-up recurring issue: its one distinctive word carries the label, so whether a model
# learned it shows on new wordings.
QUORVEX = [
    "the quorvex box is doing it again",
    "Quorvex problem since Monday, same as my neighbours",
    "is the quorvex fault fixed yet? third day now",
    "QUORVEX AGAIN. Nothing works.",
    "my mum says her quorvex has the same issue as last week",
    "quorvex thing still broken, any update",
    "hello, quorvex trouble here too in our street",
    "Still quorvex issues. When will it be sorted",
    "we have the quorvex problem, like everyone",
    "Quorvex. Again. Please fix",
    "any news on the quorvex outage",
    "quorvex keeps happening every evening",
    "the whole office has the quorvex fault",
    "Reporting the quorvex issue as asked",
    "quorvex down since the weekend",
    "same quorvex story as yesterday",
    "Our quorvex stopped again this morning",
    "is anyone looking at quorvex? it's a joke",
    "Quorvex again for the fourth time",
    "the quorvex fault is back",
]
NEW_WORDING = "quorvex?? same here"
# The small base's 140 held-out tickets move by a ticket or two (0.01 macro-F1) when it is
# retrained on a few more rows; the shipped model's gate keeps the default 0.005.
SMALL_BASE_TOLERANCE = ("--tolerance", "0.03")


def corpus_slice(start: int, stop: int) -> list[Row]:
    rows = []
    for path in sorted(CORPUS.glob("*.csv")):
        with open(path, newline="", encoding="utf-8") as f:
            for i, r in enumerate(csv.DictReader(f)):
                if start <= i < stop:
                    rows.append(Row(r["text"], {"category": r["category"],
                                                "sentiment": r["sentiment"]}, path.name))
    return rows


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small model shipped like the default one: training and held-out sets beside it."""
    out = tmp_path_factory.mktemp("base") / "base"
    out.mkdir()
    write_rows(out / TRAINING_FILE, corpus_slice(0, 40))
    write_rows(out / HOLDOUT_FILE, corpus_slice(40, 60))
    train(TrainSpec(files=[out / TRAINING_FILE], folds=0), out)
    return out


def answering(server: FakeGemini, table: dict[str, tuple[str, str]]) -> None:
    """The fake answers each text from the table (redacted texts equal these: no PII)."""
    server.answer_for = lambda text: answer_body(*table.get(text, ("GENERAL", "NEUTRAL")), 0.9)


def classify_with_llm(cli: Callable, tmp_path: Path, texts: list[str], model: Path,
                      cache: Path, name: str = "tickets") -> Path:
    data = write_csv(tmp_path / f"{name}.csv", ["id", "text"],
                     [[f"T{i}", t] for i, t in enumerate(texts)])
    out = tmp_path / f"{name}.out.csv"
    r = cli("classify", data, "-o", out, "--llm", "--llm-threshold", "1.0", "--cache-dir", cache,
            "--model", model, "--workers", "1", "--quiet")
    assert r.code == 0, r
    return out


def training_rows(model_dir: Path) -> list[dict[str, str]]:
    with gzip.open(model_dir / TRAINING_FILE, "rt", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def first_row(path: Path) -> dict[str, str]:
    with open(path, newline="", encoding="utf-8") as f:
        return next(csv.DictReader(f))


def pointer(models: Path) -> dict:
    return json.loads((models / "current.json").read_text())


# --- the cache ------------------------------------------------------------------------------

def test_cache_keeps_the_redacted_text_and_who_asked_never_the_phone_number(
        cli, tmp_path, gemini_env, model_dir):
    cache = tmp_path / "c"
    classify_with_llm(cli, tmp_path, ["my bill is wrong, call me on 07700 900123 please"],
                      model_dir, cache)
    with AnswerCache(cache) as c:
        (record,) = list(c.records())
    value = record.value
    assert "[PHONE]" in value["text"] and "900123" not in value["text"]
    assert {"category", "sentiment", "confidence", "backend", "model", "prompt_version",
            "prompt_hash", "taxonomy_hash", "at"} <= set(value)
    assert value["backend"] == "gemini" and abs(value["at"] - time.time()) < 600
    for path in cache.rglob("*"):
        if path.is_file():
            assert b"900123" not in path.read_bytes(), path


def test_an_old_format_answer_is_still_a_hit_but_is_not_learned(cli, tmp_path, gemini_env,
                                                                base):
    cache = tmp_path / "c"
    classify_with_llm(cli, tmp_path, QUORVEX[:1], base, cache)
    with AnswerCache(cache) as c:
        (record,) = list(c.records())
        c.put_many({record.key: {k: record.value[k]
                                 for k in ("category", "sentiment", "confidence")}})
    requests = gemini_env.count
    out = classify_with_llm(cli, tmp_path, QUORVEX[:1], base, cache)
    assert gemini_env.count == requests
    assert first_row(out)["cached"] == "true"
    r = cli("learn", "--model", base, "--cache-dir", cache, "-o", tmp_path / "m")
    assert r.code == ExitCode.DATA and "nothing new to learn" in r.stderr


def test_cache_clear_older_than_removes_only_the_old_answers(cli, tmp_path, gemini_env, base):
    cache = tmp_path / "c"
    classify_with_llm(cli, tmp_path, QUORVEX[:3], base, cache)
    # Age one entry by ten days, as if it were stored then (diskcache's own store time).
    with sqlite3.connect(cache / "cache.db") as db:
        db.execute("UPDATE Cache SET store_time = store_time - 864000 "
                   "WHERE rowid = (SELECT MIN(rowid) FROM Cache)")
    r = cli("cache", "clear", "--older-than", "7", "--cache-dir", cache)
    assert r.code == 0 and "1 answers older than 7 days removed" in r.stdout
    with AnswerCache(cache) as c:
        assert len(list(c.records())) == 2
    assert cli("cache", "clear", "--older-than", "-1", "--cache-dir", cache).code == 2


# --- learn, the gate, promotion ----------------------------------------------------------------

def test_learn_promote_then_classify_answers_a_new_wording_of_a_learned_issue(
        cli, tmp_path, gemini_env, base):
    answering(gemini_env, {t: ("NETWORK", "NEGATIVE") for t in QUORVEX})
    cache, models = tmp_path / "c", tmp_path / "models"
    classify_with_llm(cli, tmp_path, QUORVEX, base, cache)
    assert load_model(base).predict([NEW_WORDING])[0].label("category") != "NETWORK"
    r = cli("learn", "--models-dir", models, "--model", base, "--cache-dir", cache,
            *SMALL_BASE_TOLERANCE)
    assert r.code == 0, r
    current = pointer(models)
    new = models / current["current"]
    assert current["previous"] == load_model(base).version
    card = json.loads((new / "card.json").read_text())
    lineage = card["lineage"]
    assert lineage["base"]["version"] == current["previous"]
    assert lineage["rows"]["base"] == len(corpus_slice(0, 40)) and lineage["rows"]["human"] == 0
    assert lineage["rows"]["llm"] + lineage["held_out"]["llm"] == len(QUORVEX)
    assert lineage["thresholds"]["min_llm_confidence"] == 0.8
    assert lineage["llm_heads"] == ["category"]  # the LLM's sentiment only with --llm-sentiment
    assert {r["sentiment"] for r in training_rows(new) if r["source"] == "llm"} == {""}
    gate = lineage["gate"]
    assert gate["passed"] is True
    assert gate["new_slice"]["category"]["new_log_loss"] < \
        gate["new_slice"]["category"]["base_log_loss"]
    out = tmp_path / "new.csv"
    r = cli("classify", write_csv(tmp_path / "n.csv", ["id", "text"], [["N1", NEW_WORDING]]),
            "-o", out, "--model", models, "--no-llm", "--quiet")
    assert r.code == 0, r
    row = first_row(out)
    assert row["category"] == "NETWORK" and row["model_version"] == current["current"]


def test_the_gate_refuses_a_worse_model_with_exit_3_and_leaves_current_untouched(
        cli, tmp_path, gemini_env, base):
    """The LLM labels BASE's own held-out tickets wrongly: NEW learns the wrong labels and
    loses on BASE's held-out data."""
    holdout = corpus_slice(40, 60)
    wrong = {r.text: ("GENERAL" if r.labels["category"] != "GENERAL" else "BILLING",
                      "POSITIVE") for r in holdout}
    answering(gemini_env, wrong)
    cache, models = tmp_path / "c", tmp_path / "models"
    classify_with_llm(cli, tmp_path, list(wrong), base, cache)
    assert cli("promote", "--models-dir", models, "--to", base).code == 0
    before = (models / "current.json").read_bytes()
    r = cli("learn", "--models-dir", models, "--cache-dir", cache)
    assert r.code == ExitCode.NOT_PROMOTED == 3, r
    assert "not promoted" in r.stderr and "held-out" in r.stderr
    assert (models / "current.json").read_bytes() == before
    assert len([p for p in models.iterdir() if p.is_dir()]) == 2  # NEW kept for a look


def test_rollback_to_previous_and_forward_again(cli, tmp_path, gemini_env, base):
    answering(gemini_env, {t: ("NETWORK", "NEGATIVE") for t in QUORVEX})
    cache, models = tmp_path / "c", tmp_path / "models"
    classify_with_llm(cli, tmp_path, QUORVEX, base, cache)
    assert cli("learn", "--models-dir", models, "--model", base, "--cache-dir", cache,
               *SMALL_BASE_TOLERANCE).code == 0
    learned = pointer(models)["current"]
    r = cli("promote", "--models-dir", models, "--to", "PREVIOUS")
    assert r.code == 0, r
    assert pointer(models)["current"] == load_model(base).version
    assert load_model(models).version == load_model(base).version  # classify --model DIR
    assert cli("promote", "--models-dir", models, "--to", learned).code == 0
    assert pointer(models)["current"] == learned
    r = cli("promote", "--models-dir", models, "--to", "nosuchversion")
    assert r.code == ExitCode.USAGE and "versions present" in r.stderr


def test_learn_is_reproducible_same_inputs_same_model_bytes(cli, tmp_path, gemini_env, base,
                                                            monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    answering(gemini_env, {t: ("NETWORK", "NEGATIVE") for t in QUORVEX})
    cache = tmp_path / "c"
    classify_with_llm(cli, tmp_path, QUORVEX, base, cache)
    for name in ("a", "b"):
        r = cli("learn", "--model", base, "--cache-dir", cache, "-o", tmp_path / name)
        assert r.code == 0 and "nothing is promoted without --models-dir" in r.stderr, r
    for name in ("model.skops", TRAINING_FILE, HOLDOUT_FILE, "card.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_learn_needs_exactly_one_destination_and_a_base_with_its_training_set(cli, tmp_path,
                                                                              model_dir):
    assert cli("learn").code == ExitCode.USAGE
    assert cli("learn", "-o", tmp_path / "m", "--models-dir", tmp_path / "d").code == 2
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("model.skops", "card.json"):
        (bare / name).write_bytes((model_dir / name).read_bytes())
    r = cli("learn", "--model", bare, "-o", tmp_path / "m")
    assert r.code == ExitCode.CONFIG and "training.csv.gz" in r.stderr


def test_human_labels_outside_the_taxonomy_are_a_data_error(cli, tmp_path, base):
    labels = write_csv(tmp_path / "l.csv", ["text", "category"], [["quorvex", "BILING"]])
    r = cli("learn", "--model", base, "--labels", labels, "-o", tmp_path / "m")
    assert r.code == ExitCode.DATA and "BILING" in r.stderr


@pytest.mark.slow
def test_the_shipped_model_is_learnable_from_as_installed(cli, tmp_path, gemini_env):
    """The issue's own check: classify --llm --llm-threshold 1.0 --cache-dir C, then
    learn --cache-dir C -o M (BASE: the shipped model), then classify --model M --no-llm."""
    answering(gemini_env, {t: ("NETWORK", "NEGATIVE") for t in QUORVEX})
    cache = tmp_path / "c"
    # The shipped model reads "same here" as an outage already; the word alone it cannot place.
    new_wording = "quorvex!!"
    assert load_model(SHIPPED_MODEL).predict([new_wording])[0].label("category") != "NETWORK"
    classify_with_llm(cli, tmp_path, QUORVEX, SHIPPED_MODEL, cache)
    r = cli("learn", "--cache-dir", cache, "-o", tmp_path / "M")
    assert r.code == 0, r
    card = json.loads((tmp_path / "M" / "card.json").read_text())
    assert card["lineage"]["base"]["version"] == load_model(SHIPPED_MODEL).version
    assert card["lineage"]["rows"]["base"] == len(training_rows(SHIPPED_MODEL))
    out = tmp_path / "o.csv"
    r = cli("classify", write_csv(tmp_path / "n.csv", ["id", "text"], [["N1", new_wording]]),
            "-o", out, "--model", tmp_path / "M", "--no-llm", "--quiet")
    assert r.code == 0, r
    assert first_row(out)["category"] == "NETWORK"
