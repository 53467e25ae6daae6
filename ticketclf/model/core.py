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
        return predictions_from_proba(self.predict_proba(texts), self.label_table())

    def label_table(self) -> dict[str, list[str]]:
        return {head: self.labels(head) for head in self.heads}


def predictions_from_proba(
    proba: dict[str, np.ndarray], labels: dict[str, list[str]]
) -> list[Prediction]:
    """Top label and its probability per head; a head the model lacks predicts nothing."""
    n = len(next(iter(proba.values())))
    top: dict[str, tuple[list[str], list[float]]] = {}
    for head in ("category", "sentiment"):
        if head in proba:
            idx = proba[head].argmax(axis=1)
            conf = proba[head][np.arange(n), idx]
            names = labels[head]
            top[head] = ([names[i] for i in idx], conf.tolist())
        else:
            top[head] = ([""] * n, [0.0] * n)
    cat, cat_conf = top["category"]
    sent, sent_conf = top["sentiment"]
    return [Prediction(cat[i], cat_conf[i], sent[i], sent_conf[i]) for i in range(n)]
