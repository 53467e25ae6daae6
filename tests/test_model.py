"""Training → save → safe load → predict → evaluate, on small real data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from ticketclf.errors import ConfigError
from ticketclf.evaluate import (
    expected_calibration_error,
    risk_coverage,
    threshold_for_precision,
)
from ticketclf.model import load_model
from ticketclf.model.store import CARD_FILE, MODEL_FILE, seal_card
from ticketclf.model.train import TrainSpec, train

from .conftest import corpus_rows, write_csv


@pytest.fixture(scope="module")
def small_training_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 40 tickets of each hand-written category file."""
    return write_csv(tmp_path_factory.mktemp("data") / "train.csv",
                     ["text", "category", "sentiment"], corpus_rows(40))


@pytest.fixture(scope="module")
def trained(small_training_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model") / "m"
    train(TrainSpec(files=[small_training_file], folds=3), out)
    return out


def test_training_writes_a_card_that_pins_the_model_file(trained: Path):
    card = json.loads((trained / CARD_FILE).read_text())
    import hashlib

    assert card["sha256"] == hashlib.sha256((trained / MODEL_FILE).read_bytes()).hexdigest()
    assert card["version"] == card["sha256"][:12]
    assert set(card["labels"]) == {"category", "sentiment"}
    assert set(card["thresholds"]) == {"category", "sentiment"}
    assert card["training_data"]["files"][0]["rows"] > 0
    assert 0 < card["metrics"]["category"]["accuracy"] <= 1
    assert "scikit-learn" in card["libraries"]


def assert_same_model_from_two_processes(data: Path, tmp_path: Path, monkeypatch,
                                         *options: str) -> None:
    """One run in this process, one in a fresh one: state that differs between processes (an
    object's address, say) must not reach the model bytes or the card."""
    import os

    from .conftest import run_cli

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    a, b = tmp_path / "a", tmp_path / "b"
    train(TrainSpec(files=[data], folds=0, encoder="--encoder" in options), a)
    r = run_cli("train", data, "-o", b, "--folds", "0", *options, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    assert (a / MODEL_FILE).read_bytes() == (b / MODEL_FILE).read_bytes()
    card_a = json.loads((a / CARD_FILE).read_text())
    card_b = json.loads((b / CARD_FILE).read_text())
    card_a["name"] = card_b["name"]
    assert card_a == card_b | {"card_sha256": card_a["card_sha256"]}  # the seal covers the name


def test_same_data_gives_the_same_model_and_card(small_training_file, tmp_path, monkeypatch):
    assert_same_model_from_two_processes(small_training_file, tmp_path, monkeypatch)


def test_loaded_model_predicts_labels_from_the_taxonomy(trained: Path):
    model = load_model(trained)
    (pred,) = model.predict(["I want to cancel my contract and leave, send me the PAC code"])
    assert pred.label("category") in model.labels("category")
    assert 0 <= pred.confidence("category") <= 1
    assert pred.label("sentiment") in {"POSITIVE", "NEUTRAL", "NEGATIVE", "CRITICAL"}


def test_a_model_file_holds_the_vocabulary_as_one_array_and_loads_it_as_the_same_dict(
        trained: Path):
    """skops checks one node per dict key and value; the vocabulary as an array is one node
    (what keeps a one-ticket predict's load short), and the loaded vectorizer is unchanged."""
    import zipfile

    from ticketclf.model.store import load_artifacts

    with zipfile.ZipFile(trained / MODEL_FILE) as archive:
        schema = archive.read("schema.json").decode()
    assert '"vocabulary_terms_"' in schema and '"vocabulary_"' not in schema
    (_name, word), *_ = load_artifacts(trained)[0]["vectorizer"].transformer_list
    assert sorted(word.vocabulary_.values()) == list(range(len(word.vocabulary_)))
    assert word.get_feature_names_out()[word.vocabulary_["cancel"]] == "cancel"
    terms = ["cancel", "my", "contract", "cancel my", "my contract"]
    row = word.transform(["cancel my contract"])
    assert sorted(word.get_feature_names_out()[row.indices]) == sorted(
        t for t in terms if t in word.vocabulary_)


def test_rows_of_an_unscored_style_are_learned_from_but_do_not_score_or_set_thresholds(
        tmp_path: Path):
    """learn's LLM answers: their labels' own errors must not read as the model's (which
    would raise the thresholds until the model flags what it gets right)."""
    categories = sorted({c for _t, c, _s in corpus_rows(1)})
    rows = corpus_rows(40)
    trusted = [[t, c, s, "email"] for i, (t, c, s) in enumerate(rows) if i % 5]
    wrong = [[t, categories[(categories.index(c) + 1) % len(categories)], s, "llm"]
             for t, c, s in rows[0::5]]  # an LLM wrong on a fifth of what it answered
    data = write_csv(tmp_path / "train.csv", ["text", "category", "sentiment", "style"],
                     trusted + wrong)
    cards = {}
    for name, unscored in (("scored", frozenset()), ("unscored", frozenset({"llm"}))):
        cards[name] = train(TrainSpec(files=[data], folds=3, style_column="style",
                                      unscored_styles=unscored), tmp_path / name)
    scored, unscored = (cards[n]["metrics"]["category"] for n in ("scored", "unscored"))
    assert unscored["n"] == len(trusted) and scored["n"] == len(trusted) + len(wrong)
    assert unscored["accuracy"] > scored["accuracy"]
    assert cards["unscored"]["thresholds"]["category"] <= cards["scored"]["thresholds"]["category"]


class Payload:
    """Stands for any object a hostile model file could ask the loader to build."""

    def __reduce__(self):  # what pickle would run on load
        return (print, ("pwned",))


def test_untrusted_type_in_model_file_is_refused(trained: Path, tmp_path: Path):
    """An archive naming a type outside the allow-list is refused, even with a card whose
    hash matches it (so the refusal is skops' allow-list, not the hash check)."""
    import hashlib

    import skops.io as sio

    model = load_model(trained)
    data = sio.dumps({"vectorizer": Payload(), "heads": model.heads})
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / MODEL_FILE).write_bytes(data)
    card = json.loads((trained / CARD_FILE).read_text())
    card["sha256"] = hashlib.sha256(data).hexdigest()
    (bad / CARD_FILE).write_text(json.dumps(seal_card(card)))  # a card that passes its seal
    with pytest.raises(ConfigError, match="not trusted"):
        load_model(bad)


def test_unknown_labels_need_any_labels(small_training_file: Path, tmp_path: Path):
    from ticketclf.errors import DataError

    odd = tmp_path / "odd.csv"
    odd.write_text("text,category\nhello there,GREETING\nmy bill,BILLING\n")
    with pytest.raises(DataError, match="outside the taxonomy"):
        train(TrainSpec(files=[odd], folds=0), tmp_path / "m")


def test_cli_evaluate_reports_metrics_and_writes_html(cli, trained, small_training_file,
                                                      tmp_path):
    report = tmp_path / "report.html"
    r = cli("evaluate", small_training_file, "--model", trained, "--json", "--report", report)
    assert r.code == 0, r
    result = json.loads(r.stdout)
    cat = result["heads"]["category"]
    with open(small_training_file, newline="") as f:
        assert cat["n"] == sum(1 for _ in csv.DictReader(f))
    assert 0 <= cat["accuracy"] <= 1
    assert len(cat["confusion"]) == len(cat["labels"])
    assert [row["coverage"] for row in cat["risk_coverage"]] == [0.5, 0.7, 0.8, 0.9, 1.0]
    html = report.read_text()
    assert html.count("<svg") == 6 and "http" not in html.replace("http://www.w3.org/2000/svg", "")


def test_predict_explain_names_words_from_the_text(cli, trained):
    r = cli("predict", "--json", "--explain", "--model", trained,
            "please refund the double charge on my bill")
    assert r.code == 0, r
    out = json.loads(r.stdout)
    features = [c["feature"] for c in out["explanation"]["category"]]
    assert features and all(f.startswith(("word: ", "chars: ")) for f in features)
    words = [f.removeprefix("word: ") for f in features if f.startswith("word: ")]
    assert all(all(w in "please refund the double charge on my bill" for w in t.split())
               for t in words)


def test_ece_is_zero_for_perfectly_calibrated_bins_and_large_when_overconfident():
    conf = np.array([0.9] * 10)
    assert expected_calibration_error(conf, np.array([1] * 9 + [0])) == pytest.approx(0.0)
    assert expected_calibration_error(conf, np.zeros(10)) == pytest.approx(0.9)


def test_risk_coverage_keeps_the_most_confident_first():
    conf = np.array([0.99, 0.2, 0.8, 0.6])
    correct = np.array([1, 0, 1, 0])
    rows = risk_coverage(conf, correct, [0.5, 1.0])
    assert rows[0] == {"coverage": 0.5, "accuracy": 1.0, "threshold": 0.8}
    assert rows[1]["accuracy"] == 0.5


def test_threshold_for_precision_is_the_lowest_that_keeps_the_target():
    conf = np.linspace(1, 0.01, 100)
    correct = (np.arange(100) < 60).astype(float)  # the 60 most confident are right
    t = threshold_for_precision(conf, correct, 0.95)
    kept = correct[conf >= t]
    assert kept.mean() >= 0.95
    assert len(kept) >= 60


def test_evaluate_llm_reports_hybrid_beside_local(cli, trained, tmp_path, gemini_env):
    """With every ticket escalated to a server that knows the answers, the hybrid scores
    perfectly while the local scores stay what the model alone gets."""
    from .fake_gemini import answer_body

    rows = [("my broadband keeps dropping every evening, whole street is slow", "NETWORK",
             "NEGATIVE"),
            ("please refund the double charge on my bill", "BILLING", "NEUTRAL"),
            ("thank you Sam at the shop, brilliant help", "GENERAL", "POSITIVE"),
            ("cancel my contract now or I go to the ombudsman", "CANCELLATION", "CRITICAL")]
    truth = {text: (cat, sent) for text, cat, sent in rows}
    gemini_env.answer_for = lambda text: answer_body(*truth[text], confidence=0.95)
    data = tmp_path / "labelled.csv"
    with open(data, "w", newline="") as f:
        csv.writer(f).writerows([("text", "category", "sentiment"), *rows])
    r = cli("evaluate", data, "--model", trained, "--llm", "--llm-threshold", "1", "--json")
    assert r.code == 0, r
    result = json.loads(r.stdout)
    assert result["hybrid"]["escalation_rate"] == 1.0
    assert result["hybrid"]["decided_by_llm"] == 4 == gemini_env.count
    for head in ("category", "sentiment"):
        assert result["hybrid"]["heads"][head]["accuracy"] == 1.0
        assert result["heads"][head]["n"] == 4


def test_evaluate_llm_without_a_key_is_a_configuration_error(cli, trained, small_training_file):
    r = cli("evaluate", small_training_file, "--model", trained, "--llm")
    assert r.code == 78 and "GEMINI_API_KEY" in r.stderr
