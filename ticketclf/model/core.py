"""A loaded model: one shared vectorizer and a calibrated classifier per head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..schema import Prediction


class TicketModel:
    def __init__(self, vectorizer: Any, heads: dict[str, Any], card: dict[str, Any]) -> None:
        self.vectorizer = vectorizer
        self.heads = heads
        self.card = card

    @property
    def version(self) -> str:
        return str(self.card.get("version", ""))

    def labels(self, head: str) -> list[str]:
        return [str(c) for c in self.heads[head].classes_]

    def threshold(self, head: str) -> float:
        """The card's confidence threshold for a head (0.5 for a card without one)."""
        return float(self.card.get("thresholds", {}).get(head, 0.5))

    def predict_proba(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        features = self.vectorizer.transform(texts)
        return {head: clf.predict_proba(features) for head, clf in self.heads.items()}

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Each text's labels and confidences, and its language."""
        from .language import detect_languages

        return predictions_from_proba(self.predict_proba(texts), self.label_table(),
                                      detect_languages(texts))

    @property
    def languages(self) -> frozenset[str]:
        """The languages of the training texts (the card's); empty for a card that predates
        them, which then claims none and flags none as unseen."""
        return frozenset(self.card.get("languages") or ())

    def label_table(self) -> dict[str, list[str]]:
        return {head: self.labels(head) for head in self.heads}


def top_labels(proba: np.ndarray, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each row's most probable label (an object array of names) and its probability: the one
    place a label is chosen from a head's probabilities."""
    names = np.asarray(labels, dtype=object)
    idx = proba.argmax(axis=1)
    return names[idx], proba[np.arange(len(proba)), idx]


def ranked_labels(proba_row: np.ndarray, labels: Sequence[str],
                  top: int | None = None) -> list[tuple[str, float]]:
    """One row's labels with their probabilities, most probable first."""
    order = np.argsort(-proba_row, kind="stable")[:top]
    return [(str(labels[i]), float(proba_row[i])) for i in order]


def predictions_from_proba(
    proba: dict[str, np.ndarray], labels: dict[str, list[str]],
    languages: Sequence[str] | None = None,
) -> list[Prediction]:
    """Each head's top label and its probability, per row (with its language, if given)."""
    tops = {head: top_labels(p, labels[head]) for head, p in proba.items()}
    n = len(next(iter(proba.values()))) if proba else 0
    columns = {head: (names.tolist(), conf.tolist()) for head, (names, conf) in tops.items()}
    langs = languages if languages is not None else [""] * n
    return [Prediction({h: c[0][i] for h, c in columns.items()},
                       {h: c[1][i] for h, c in columns.items()}, langs[i]) for i in range(n)]
