"""A static sentence embedding: MiniLM's meaning at the cost of a word count.

static.npz (built by models/build_static.py) holds a vector for each of ~50k English words,
distilled from all-MiniLM-L6-v2 so that the sum of a text's word vectors points where MiniLM
embeds the whole text. At run time a text costs one regex tokenisation and a sparse product
with that table: no transformer, no tokenizer, no weights package. A fitted StaticEmbedding
names the table by its SHA-256 rather than carrying it (12 of a model file's 14 MB, in every
learned model and twice in the image): a model is refused at load when the installed table
is another one. Models that carry their table (made before) use their own.
"""

from __future__ import annotations

import functools
import hashlib
import io
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import CountVectorizer

from ..errors import ConfigError

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
        self.table_sha256_ = _package_table()[0]
        return self

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """(words, vectors): the model's own, or the package's when it is the one named."""
        if hasattr(self, "vectors_"):
            return self.words_, self.vectors_
        sha, words, vectors = _package_table()
        if sha != self.table_sha256_:
            raise ConfigError(
                f"the model was trained with static word table {self.table_sha256_[:12]}, and "
                f"this ticketclf ships {sha[:12]}",
                "retrain the model, or install the ticketclf version that trained it")
        return words, vectors

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        counter, vectors = _prepared(*self.table())
        summed = np.asarray(counter.transform(texts) @ vectors, dtype=np.float32)
        norms = np.linalg.norm(summed, axis=1, keepdims=True)
        return np.divide(summed, norms, out=np.zeros_like(summed), where=norms > 0)

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.array([f"static{i}" for i in range(self.table()[1].shape[1])], dtype=object)

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        return tags


@functools.cache
def _package_table() -> tuple[str, np.ndarray, np.ndarray]:
    """The installed table's SHA-256, words and vectors, read once per process."""
    data = TABLE_PATH.read_bytes()
    with np.load(io.BytesIO(data)) as npz:
        return hashlib.sha256(data).hexdigest(), npz["words"], npz["vectors"]


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
