"""The language column and its rule: a ticket in a language the model was not trained on is
uncertain by definition (escalated with the LLM on, needs_review otherwise)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from ticketclf.model import load_model
from ticketclf.model.train import TrainSpec, train
from ticketclf.pipeline import Thresholds
from ticketclf.schema import Prediction

from .conftest import corpus_rows, write_csv
from .fake_gemini import answer_body

FRENCH = "Bonjour, ma facture de ce mois est deux fois plus élevée que d'habitude, pourquoi ?"
ENGLISH = "Hi, my bill this month is twice what it usually is, why is that?"


@pytest.fixture(scope="module")
def english_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = write_csv(tmp_path_factory.mktemp("data") / "train.csv",
                     ["text", "category", "sentiment"], corpus_rows(25))
    out = tmp_path_factory.mktemp("model") / "m"
    train(TrainSpec(files=[data], folds=0), out)
    return out


def confident(language: str) -> Prediction:
    return Prediction({"category": "BILLING"}, {"category": 0.99}, language)


def test_the_card_lists_the_training_languages(english_model: Path):
    assert json.loads((english_model / "card.json").read_text())["languages"] == ["en"]


@pytest.mark.parametrize(("language", "uncertain"), [
    ("en", False), ("fr", True), ("und", False), ("", False)])
def test_only_a_language_outside_the_training_languages_makes_a_confident_answer_uncertain(
        language: str, uncertain: bool):
    thresholds = Thresholds({"category": 0.5}, frozenset({"en"}))
    assert thresholds.uncertain(confident(language)) is uncertain


def test_a_model_without_training_languages_flags_no_language():
    assert not Thresholds({"category": 0.5}).uncertain(confident("fr"))


def classify_english_and_french(cli, model: Path, tmp_path: Path,
                                *llm: str) -> dict[str, dict[str, str]]:
    """Output rows by id; --llm-threshold 0: only the language can make a ticket uncertain."""
    src = write_csv(tmp_path / "t.csv", ["id", "text"], [["1", ENGLISH], ["2", FRENCH]])
    out = tmp_path / "out.csv"
    r = cli("classify", src, "-o", out, "--model", model, *llm, "--llm-threshold", "0.0",
            "--quiet")
    assert r.code == 0, r
    with open(out, newline="", encoding="utf-8") as f:
        return {row["id"]: row for row in csv.DictReader(f)}


def test_classify_writes_the_language_and_flags_the_unseen_one(cli, english_model: Path,
                                                                  tmp_path: Path):
    rows = classify_english_and_french(cli, english_model, tmp_path, "--no-llm")
    assert (rows["1"]["language"], rows["1"]["needs_review"]) == ("en", "false")
    assert (rows["2"]["language"], rows["2"]["needs_review"]) == ("fr", "true")


def test_an_unseen_language_is_escalated_when_the_llm_is_on(cli, english_model: Path,
                                                              tmp_path: Path, gemini_env):
    gemini_env.answer_for = lambda _text: answer_body("BILLING", "NEGATIVE", 0.9)
    rows = classify_english_and_french(cli, english_model, tmp_path, "--llm")
    assert rows["1"]["decided_by"] == "model"
    assert (rows["2"]["decided_by"], rows["2"]["category"]) == ("llm", "BILLING")
    assert gemini_env.count == 1


def test_predict_says_the_language_and_why_it_is_uncertain(english_model: Path):
    from ticketclf.model.explain import answer

    result = answer(load_model(english_model), FRENCH, threshold=0.0)
    assert (result.language, result.unseen_language, result.uncertain) == ("fr", True, True)
