"""Why a head chose its label: the features of the text that pushed its linear score up.

Every head is a linear model over TF-IDF features, so a label's score is a sum over the text's
features of value × weight; the largest terms are the explanation. Word features read as words
or word pairs, character features as the letter patterns that caught typos and word forms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .core import TicketModel


@dataclass(frozen=True)
class Contribution:
    feature: str  # "word: refund" or "chars: 'outag'"
    weight: float


def linear_weights(classifier: Any) -> tuple[np.ndarray, np.ndarray]:
    """(coef, intercept) of the linear model that scores the features: the SVM under the
    stacker (the stacker only rescales its per-class scores), or the classifier itself."""
    classifier = getattr(classifier, "classifier_", classifier)  # under a NeighbourProduct
    inner = getattr(classifier, "estimators_", None)
    linear = inner[0] if inner else classifier
    return np.asarray(linear.coef_), np.asarray(linear.intercept_)


def _readable(name: str) -> str | None:
    """Words and letter patterns read as themselves; sentence-embedding dimensions don't."""
    kind, _, token = name.partition("__")
    return {"word": f"word: {token}", "char": f"chars: {token!r}"}.get(kind)


def explain(model: TicketModel, text: str, head: str, label: str,
            top: int = 8) -> list[Contribution]:
    """The `top` features of `text` that most raised `label`'s score in `head`."""
    features = model.vectorizer.transform([text]).tocsr()
    coef, _ = linear_weights(model.heads[head])
    labels = model.labels(head)
    row = coef[labels.index(label)] if coef.shape[0] > 1 else (
        coef[0] if label == labels[1] else -coef[0])
    idx = features.indices
    contrib = features.data * row[idx]
    names = model.vectorizer.get_feature_names_out()
    readable = [(_readable(str(names[idx[i]])), float(contrib[i]))
                for i in np.argsort(-contrib) if contrib[i] > 0]
    return [Contribution(name, weight) for name, weight in readable if name][:top]
