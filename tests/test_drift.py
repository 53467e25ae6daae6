"""drift.py: the divergence and share functions on small real numbers, the training prior
from real cards, and unseen words counted against the shipped model's real vocabulary."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
from scipy.spatial.distance import jensenshannon
from sklearn.feature_extraction.text import TfidfVectorizer

from ticketclf.drift import (
    TOKEN_SAMPLE_EVERY,
    DriftCounts,
    TrainingPrior,
    WordVocabulary,
    count_batch,
    figures,
    js_divergence,
    mix_divergence,
)
from ticketclf.model import load_model
from ticketclf.schema import HEADS, Prediction

from .conftest import SHIPPED_MODEL

TEXTS = [
    "My BILL is wrong, I was charged twice!",
    "Fàcture incorrecte, je veux être remboursé",
    "no signal since Tuesday; 4G icon gone",
    "Die Rechnung ist zu hoch und das Internet fällt ständig aus",
    "a b c",  # single letters: the word analyzer keeps no token
    "",
]


@pytest.fixture(scope="module")
def shipped():
    return load_model(SHIPPED_MODEL)


def test_identical_mixes_diverge_by_0_and_disjoint_ones_by_1():
    assert js_divergence({"BILLING": 3, "NETWORK": 1}, {"BILLING": 3, "NETWORK": 1}) == 0
    assert js_divergence({"BILLING": 5}, {"NETWORK": 2, "PLAN": 7}) == 1


def test_divergence_is_scipys_base_2_jensen_shannon_distance_squared():
    p = {"BILLING": 10, "NETWORK": 3, "PLAN": 1, "GENERAL": 0}
    q = {"BILLING": 2, "NETWORK": 6, "PLAN": 1, "ACCOUNT": 4}
    labels = sorted(p.keys() | q.keys())
    expected = jensenshannon([p.get(k, 0) for k in labels], [q.get(k, 0) for k in labels],
                             base=2) ** 2
    assert js_divergence(p, q) == pytest.approx(expected)
    assert js_divergence(p, q) == pytest.approx(js_divergence(q, p))  # symmetric
    # by hand: (1, 0) against (1/2, 1/2) is (log2(4/3) + (log2(2/3) + 1) / 2) / 2
    assert js_divergence({"A": 1}, {"A": 1, "B": 1}) == pytest.approx(
        (math.log2(4 / 3) + (math.log2(2 / 3) + 1) / 2) / 2)


def test_counts_and_shares_of_the_same_mix_diverge_alike():
    counts, shares = {"A": 30, "B": 10}, {"A": 0.75, "B": 0.25}
    prior = {"A": 0.5, "B": 0.5}
    assert js_divergence(counts, prior) == pytest.approx(js_divergence(shares, prior))
    assert js_divergence(counts, shares) == pytest.approx(0)


def test_an_empty_mix_or_a_missing_prior_has_no_divergence():
    with pytest.raises(ValueError):
        js_divergence({}, {"A": 1})
    assert mix_divergence({"A": 0}, {"A": 1.0}) is None
    assert mix_divergence({"A": 3}, None) is None


def test_the_prior_is_the_share_of_each_label_in_the_cards_cross_validation_supports():
    card = json.loads((SHIPPED_MODEL / "card.json").read_text())
    prior = TrainingPrior.from_card(card)
    assert set(prior.labels) == set(HEADS)
    for head, shares in prior.labels.items():
        supports = {k: v["support"] for k, v in card["metrics"][head]["per_class"].items()}
        assert shares == pytest.approx({k: n / sum(supports.values())
                                        for k, n in supports.items()})
        assert set(shares) == set(card["labels"][head])


def test_a_card_without_per_class_supports_gives_no_divergence_rather_than_a_guess():
    prior = TrainingPrior.from_card({"metrics": {"folds": 0}, "labels": {"category": ["A"]}})
    assert prior.labels == {} and prior.languages is None
    result = figures(prior, DriftCounts(tickets=3), {"category": {"A": 3}}, ["category"])
    assert result.divergence == {"category": None}
    assert result.unseen_languages is None


def test_word_tokens_are_split_exactly_as_the_models_word_analyzer_splits_them(shipped):
    word = dict(shipped.vectorizer.transformer_list)["word"]
    analyzer = word.build_analyzer()
    vocabulary = WordVocabulary.of(shipped.vectorizer)
    assert vocabulary is not None
    for text in TEXTS:
        unigrams = [gram for gram in analyzer(text) if " " not in gram]
        assert vocabulary.tokenize(vocabulary.preprocess(text)) == unigrams, text


def test_unseen_tokens_are_the_word_tokens_the_vectorizer_has_no_feature_for(shipped):
    word = dict(shipped.vectorizer.transformer_list)["word"]
    vocabulary = WordVocabulary.of(shipped.vectorizer)
    assert vocabulary is not None
    assert vocabulary.count(["my bill is wrong qqzxv"]) == (1, 5)
    assert vocabulary.count(["a b c", ""]) == (0, 0)
    # the words with a feature in the fitted vectorizer are the ones counted as seen
    names = word.get_feature_names_out()
    for text in TEXTS:
        featured = {names[i] for i in word.transform([text]).nonzero()[1] if " " not in names[i]}
        tokens = vocabulary.tokenize(vocabulary.preprocess(text))
        unseen, total = vocabulary.count([text])
        assert total == len(tokens)
        assert unseen == sum(token not in featured for token in tokens), text


def test_a_vectorizer_without_a_word_vocabulary_has_no_unseen_token_figure():
    char_only = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 3)).fit(TEXTS[:4])
    assert WordVocabulary.of(char_only) is None
    counts = count_batch(None, {}, ["hello there"], [Prediction({}, {})])
    assert counts.vocabulary is False and counts.tokens == 0
    assert figures(TrainingPrior(), counts, {}, []).unseen_tokens is None


def test_a_plain_word_vectorizer_is_its_own_vocabulary():
    plain = TfidfVectorizer().fit(["billing question", "network outage"])
    vocabulary = WordVocabulary.of(plain)
    assert vocabulary is not None and vocabulary.count(["billing outage today"]) == (1, 3)


def test_unseen_tokens_are_counted_on_every_fourth_ticket_of_a_batch(shipped):
    vocabulary = WordVocabulary.of(shipped.vectorizer)
    assert vocabulary is not None and TOKEN_SAMPLE_EVERY == 4
    texts = [f"my bill qqzx{i}" if i % TOKEN_SAMPLE_EVERY == 0 else "bill"
             for i in range(9)]  # counted: tickets 0, 4 and 8
    counts = count_batch(vocabulary, {}, texts, [Prediction({}, {})] * len(texts))
    assert (counts.unseen_tokens, counts.tokens) == (3, 9)
    assert counts.tickets == 9


def test_low_confidence_is_the_local_confidence_below_each_heads_threshold():
    predictions = [Prediction({"category": "BILLING", "sentiment": "NEUTRAL"},
                              {"category": c, "sentiment": s})
                   for c, s in ((0.2, 0.9), (0.3, 0.5), (0.25, 0.7), (0.9, 0.1))]
    counts = count_batch(None, {"category": 0.26, "sentiment": 0.6}, [""] * 4, predictions)
    assert counts.low_confidence == Counter({"category": 2, "sentiment": 2})
    result = figures(TrainingPrior(), counts, {}, HEADS)
    assert result.low_confidence == {"category": 0.5, "sentiment": 0.5}


def test_unseen_languages_are_those_outside_the_cards_and_no_verdict_counts_as_seen():
    predictions = [Prediction({}, {}, language) for language in
                   ["en"] * 3 + ["de"] + ["fr"] * 3 + ["und"] + [""] * 2]
    counts = count_batch(None, {}, [""] * 10, predictions)
    assert counts.languages == Counter({"en": 3, "de": 1, "fr": 3, "und": 1, "": 2})
    card = {"languages": ["en", "de"]}
    assert figures(TrainingPrior.from_card(card), counts, {}, HEADS).unseen_languages == \
        pytest.approx(0.3)
    for card in ({}, {"languages": []}):  # a card that lists none: unknown, not 0 or 1
        assert figures(TrainingPrior.from_card(card), counts, {}, HEADS).unseen_languages is None


def test_counts_of_batches_add_up_to_the_counts_of_the_run():
    run = DriftCounts()
    run.add(DriftCounts(2, Counter({"category": 1}), 10, 3, True, Counter({"en": 2})))
    run.add(DriftCounts(3, Counter({"category": 2, "sentiment": 1}), 5, 1, True,
                        Counter({"en": 1, "": 2})))
    assert run == DriftCounts(5, Counter({"category": 3, "sentiment": 1}), 15, 4, True,
                              Counter({"en": 3, "": 2}))
    run.add(DriftCounts(vocabulary=False))
    assert run.vocabulary is False  # one batch without a vocabulary: the ratio is unknown


def test_a_run_without_tickets_has_every_figure_unknown(shipped):
    prior = TrainingPrior.from_card(shipped.card)
    result = figures(prior, DriftCounts(), {"category": Counter(), "sentiment": Counter()}, HEADS)
    assert result.as_dict() == {
        "label_divergence": {"category": None, "sentiment": None},
        "low_confidence_ratio": {"category": None, "sentiment": None},
        "unseen_token_ratio": None, "unseen_language_ratio": None}
