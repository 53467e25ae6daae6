"""A loaded model: one shared vectorizer and a calibrated classifier per head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import sparse

from ..schema import Prediction

# A ticket without a single known feature keeps the model's ranking of labels (its prior
# guess) but with its probabilities scaled to about zero: no threshold trusts it.
NO_EVIDENCE_SCALE = 1e-6


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
        proba = {head: clf.predict_proba(features) for head, clf in self.heads.items()}
        return distrust_featureless(features, proba)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        return predictions_from_proba(self.predict_proba(texts), self.label_table())

    def label_table(self) -> dict[str, list[str]]:
        return {head: self.labels(head) for head in self.heads}


def distrust_featureless(features: Any, proba: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rows whose feature vector is all zero (a script or language the model never saw, emoji
    or zero-width characters only) carry no evidence; without this the model answers them
    with its intercepts alone, confidently (GENERAL 0.44, NEUTRAL 0.74). Their confidence
    becomes ~0, so they are escalated, or flagged needs_review, under any threshold."""
    counts = features.getnnz(axis=1) if sparse.issparse(features) \
        else np.count_nonzero(features, axis=1)
    empty = np.asarray(counts).ravel() == 0
    if not empty.any():
        return proba
    out = {}
    for head, p in proba.items():
        p = p.copy()
        p[empty] *= NO_EVIDENCE_SCALE
        out[head] = p
    return out


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
