"""TF-IDF that a model file stores compactly: its vocabulary as one array of terms.

skops writes a dict as a node per key and per value and checks each node on load; the word
vocabulary's tens of thousands of terms were most of the time a model took to load (and so
of a one-ticket `predict`). An array of terms in column order is one node; the dict scikit-learn
needs is rebuilt from it on load.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

_TERMS = "vocabulary_terms_"


class CompactTfidf(TfidfVectorizer):
    """A TfidfVectorizer whose saved state holds its fitted vocabulary as an array."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        vocabulary = state.pop("vocabulary_", None)
        if vocabulary is not None:
            terms = sorted(vocabulary, key=vocabulary.__getitem__)
            state[_TERMS] = np.array(terms, dtype=np.str_)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        terms = state.pop(_TERMS, None)
        if terms is not None:
            state["vocabulary_"] = {term: column for column, term in enumerate(terms.tolist())}
        super().__setstate__(state)
