"""Why a head chose its label: the features of the text that pushed its linear score up.

Every head is a linear model over TF-IDF features, so a label's score is a sum over the text's
features of value × weight; the largest terms are the explanation. Word features read as words
or word pairs, character features as the letter patterns that caught typos and word forms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UsageError
from .core import TicketModel, predictions_from_proba, ranked_labels


@dataclass(frozen=True)
class Contribution:
    feature: str  # "word: refund" or "chars: 'outag'"
    weight: float


def linear_weights(classifier: Any) -> np.ndarray:
    """The per-class feature weights of the linear model that scores the features: the SVM
    under the stacker (the stacker only rescales its per-class scores), or the classifier."""
    classifier = getattr(classifier, "classifier_", classifier)  # under a NeighbourProduct
    inner = getattr(classifier, "estimators_", None)
    linear = inner[0] if inner else classifier
    return np.asarray(linear.coef_)


def _readable(name: str) -> str | None:
    """Words and letter patterns read as themselves; sentence-embedding dimensions don't."""
    kind, _, token = name.partition("__")
    return {"word": f"word: {token}", "char": f"chars: {token!r}"}.get(kind)


def explain(model: TicketModel, text: str, head: str, label: str,
            top: int = 8) -> list[Contribution]:
    """The `top` features of `text` that most raised `label`'s score in `head`."""
    features = model.vectorizer.transform([text]).tocsr()
    coef = linear_weights(model.heads[head])
    labels = model.labels(head)
    row = coef[labels.index(label)] if coef.shape[0] > 1 else (
        coef[0] if label == labels[1] else -coef[0])
    idx = features.indices
    contrib = features.data * row[idx]
    names = model.vectorizer.get_feature_names_out()
    readable = [(_readable(str(names[idx[i]])), float(contrib[i]))
                for i in np.argsort(-contrib) if contrib[i] > 0]
    return [Contribution(name, weight) for name, weight in readable if name][:top]


@dataclass(frozen=True)
class TicketAnswer:
    """Everything `predict` shows about one text: per head the top labels with their
    confidences, the priority, whether a run would find it uncertain (and so escalate it, or
    flag it for review), and optionally why each head chose its label."""

    ranked: dict[str, list[tuple[str, float]]]
    priority: str
    uncertain_heads: dict[str, tuple[float, float]]  # head: (confidence, threshold)
    reasons: dict[str, list[Contribution]]
    model_version: str
    language: str
    unseen_language: bool  # a language the model was not trained on: uncertain by definition

    @property
    def uncertain(self) -> bool:
        return bool(self.uncertain_heads) or self.unseen_language


def answer(model: TicketModel, text: str, top: int = 3, with_reasons: bool = False,
           threshold: float | None = None) -> TicketAnswer:
    """The model's answer for one ticket, decided as a classify run decides it."""
    if not text.strip():
        raise UsageError("the ticket text is empty", "pass the text of a ticket")
    from ..pipeline import Thresholds
    from ..priority import priority_for
    from .language import detect_languages

    proba = model.predict_proba([text])
    (prediction,) = predictions_from_proba(proba, model.label_table(), detect_languages([text]))
    thresholds = Thresholds.from_model(model, threshold)
    ranked = {head: ranked_labels(p[0], model.labels(head), top) for head, p in proba.items()}
    uncertain = {head: (prediction.confidence(head), t)
                 for head, t in thresholds.by_head.items() if prediction.confidence(head) < t}
    reasons = {head: explain(model, text, head, prediction.label(head)) for head in proba} \
        if with_reasons else {}
    return TicketAnswer(
        ranked=ranked,
        priority=priority_for(prediction.label("category"), prediction.label("sentiment"), text),
        uncertain_heads=uncertain, reasons=reasons, model_version=model.version,
        language=prediction.language, unseen_language=thresholds.unseen_language(prediction))
