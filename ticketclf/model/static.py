"""A static sentence embedding: MiniLM's meaning at the cost of a word count.

static.npz (built by models/build_static.py) holds a vector for each of ~50k English words,
distilled from all-MiniLM-L6-v2 so that the sum of a text's word vectors points where MiniLM
embeds the whole text. At run time a text costs one regex tokenisation and a sparse product
with that table: no transformer, no tokenizer, no weights package. A fitted StaticEmbedding
carries its table, so a model file is whole.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import CountVectorizer

TABLE_PATH = Path(__file__).with_name("static.npz")
# Single characters count ("i", "u", "4" carry meaning in tickets); accents go, as MiniLM's
# uncased tokenizer drops them.
_COUNTER = {"lowercase": True, "strip_accents": "unicode", "token_pattern": r"(?u)\b\w+\b",
            "dtype": np.float32}


def analyzer() -> Callable[[str], list[str]]:
    """How texts are split into the table's words (build_static.py builds with the same)."""
    return CountVectorizer(**_COUNTER).build_analyzer()  # type: ignore[arg-type]


class StaticEmbedding(TransformerMixin, BaseEstimator):
    """Texts to unit-length sums of distilled word vectors (zero for a text with no known
    word); the table is distilled beforehand, so `fit` only copies it into the model."""

    def fit(self, texts: Sequence[str], y: object = None) -> StaticEmbedding:
        with np.load(TABLE_PATH) as npz:
            self.words_ = npz["words"]
            self.vectors_ = npz["vectors"]
        return self

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        counter, vectors = _prepared(self.words_, self.vectors_)
        summed = np.asarray(counter.transform(texts) @ vectors, dtype=np.float32)
        norms = np.linalg.norm(summed, axis=1, keepdims=True)
        return np.divide(summed, norms, out=np.zeros_like(summed), where=norms > 0)

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.array([f"static{i}" for i in range(self.vectors_.shape[1])], dtype=object)

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        return tags


_prepared_tables: dict[int, tuple[weakref.ref[np.ndarray], CountVectorizer, np.ndarray]] = {}


def _prepared(words: np.ndarray, vectors: np.ndarray) -> tuple[CountVectorizer, np.ndarray]:
    """The word index and float32 table, built once per loaded table: the model file stores a
    plain word array and float16 (half the size), neither of which is fast to use. Kept
    outside the estimator so that they never reach the model file."""
    entry = _prepared_tables.get(id(vectors))
    if entry is None or entry[0]() is not vectors:
        counter = CountVectorizer(vocabulary={str(w): i for i, w in enumerate(words)},
                                  **_COUNTER)  # type: ignore[arg-type]
        entry = (weakref.ref(vectors), counter, vectors.astype(np.float32))
        _prepared_tables[id(vectors)] = entry
        weakref.finalize(vectors, _prepared_tables.pop, id(vectors), None)
    return entry[1], entry[2]
