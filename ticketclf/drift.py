"""How far a run's tickets are from the data its model was trained on.

Four figures, each a ratio or a divergence in [0, 1], computed from counts that are summed
batch by batch (so they cost a few dictionary look-ups per ticket):

- label divergence per head: Jensen–Shannon divergence (base 2) of the run's final label mix
  from the training label mix (the card's cross-validation supports);
- low-confidence share per head: tickets whose local-model confidence, before any escalation,
  is below the head's card threshold (per head, because which head drifts says what to
  relabel; the any-head share is what gets escalated, already pushed as decisions);
- unseen-token share: word tokens, as the model's word analyzer splits them, that are not in
  its vocabulary, over all word tokens, of every TOKEN_SAMPLE_EVERY-th ticket of a batch
  (tokenising is a regex pass over the text, too dear for every ticket on the hot path;
  the cost with and without the sample: bench/RESULTS.md, bench/drift_cost.py);
- unseen-language share: tickets whose detected language is not among the card's training
  languages; "und" (too little text to tell) and no language count as seen, as they do for
  escalation (pipeline.Thresholds).

A figure whose reference the model does not carry (a card without per-class supports, without
`languages`, a vectorizer without a word vocabulary) or that has no tickets is None: unknown,
never invented.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .model.language import UNDETERMINED
from .schema import Prediction

TOKEN_SAMPLE_EVERY = 4


@dataclass(frozen=True)
class TrainingPrior:
    """What a model's card says about its training data: label shares per head and the
    training languages (None when the card does not list them)."""

    labels: dict[str, dict[str, float]] = field(default_factory=dict)
    languages: frozenset[str] | None = None

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> TrainingPrior:
        labels = {}
        for head, metrics in card.get("metrics", {}).items():
            per_class = metrics.get("per_class") if isinstance(metrics, dict) else None
            supports = {str(label): float(m.get("support", 0))
                        for label, m in (per_class or {}).items()}
            total = sum(supports.values())
            if total > 0:
                labels[head] = {label: n / total for label, n in supports.items()}
        languages = card.get("languages")  # a card without them (or an empty list): unknown
        return cls(labels, frozenset(map(str, languages)) if languages else None)


@dataclass
class DriftCounts:
    """The counts behind the figures, for one batch or a whole run (`add` sums them)."""

    tickets: int = 0  # predicted by the local model
    low_confidence: Counter[str] = field(default_factory=Counter)  # per head
    tokens: int = 0
    unseen_tokens: int = 0
    vocabulary: bool = True  # False when the model has no word vocabulary to check against
    languages: Counter[str] = field(default_factory=Counter)  # detected, per ticket

    def add(self, other: DriftCounts) -> None:
        self.tickets += other.tickets
        self.low_confidence.update(other.low_confidence)
        self.tokens += other.tokens
        self.unseen_tokens += other.unseen_tokens
        self.vocabulary = self.vocabulary and other.vocabulary
        self.languages.update(other.languages)


@dataclass(frozen=True)
class DriftFigures:
    divergence: dict[str, float | None]  # per head
    low_confidence: dict[str, float | None]  # per head
    unseen_tokens: float | None
    unseen_languages: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"label_divergence": self.divergence, "low_confidence_ratio": self.low_confidence,
                "unseen_token_ratio": self.unseen_tokens,
                "unseen_language_ratio": self.unseen_languages}


def js_divergence(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """Jensen–Shannon divergence, base 2, of two label mixes given as counts or shares: 0 for
    the same mix, 1 for mixes with no label in common. Raises ValueError for an empty mix."""
    p_total, q_total = sum(p.values()), sum(q.values())
    if p_total <= 0 or q_total <= 0:
        raise ValueError("a label mix without any count has no divergence")
    divergence = 0.0
    for label in p.keys() | q.keys():
        a, b = p.get(label, 0) / p_total, q.get(label, 0) / q_total
        m = (a + b) / 2
        divergence += (a * math.log2(a / m) if a else 0.0) + (b * math.log2(b / m) if b else 0.0)
    return min(1.0, max(0.0, divergence / 2))  # clamp float rounding, e.g. -1e-17


def mix_divergence(mix: Mapping[str, int], prior: Mapping[str, float] | None) -> float | None:
    """A run's label mix against a prior; None when either is missing or empty."""
    if not prior or sum(mix.values()) <= 0:
        return None
    return js_divergence(mix, prior)


def figures(prior: TrainingPrior, counts: DriftCounts, mixes: Mapping[str, Mapping[str, int]],
            heads: Sequence[str]) -> DriftFigures:
    """The four figures of one run, for each of `heads` (None where unknown)."""
    seen, looked_at = counts.tickets, counts.languages.total()
    unseen_languages: float | None = None
    if prior.languages is not None and looked_at:
        known = {"", UNDETERMINED, *prior.languages}
        unseen_languages = sum(n for lang, n in counts.languages.items()
                               if lang not in known) / looked_at
    return DriftFigures(
        divergence={h: mix_divergence(mixes.get(h, {}), prior.labels.get(h)) for h in heads},
        low_confidence={h: counts.low_confidence[h] / seen if seen else None for h in heads},
        unseen_tokens=(counts.unseen_tokens / counts.tokens
                       if counts.vocabulary and counts.tokens else None),
        unseen_languages=unseen_languages,
    )


@dataclass(frozen=True)
class WordVocabulary:
    """A model's word analyzer split in two (text → tokens, as the vectorizer's own
    preprocessor and tokenizer do it) and the vocabulary it was fitted with."""

    preprocess: Callable[[str], str]
    tokenize: Callable[[str], list[str]]
    known: Mapping[str, int]

    @classmethod
    def of(cls, vectorizer: Any) -> WordVocabulary | None:
        """The first word-level vectorizer with a vocabulary in `vectorizer` (itself, or a part
        of a FeatureUnion); None when there is none (e.g. an embedding-only model)."""
        parts = [part for _name, part in getattr(vectorizer, "transformer_list", [])]
        for part in [vectorizer, *parts]:
            if getattr(part, "analyzer", None) == "word" and hasattr(part, "vocabulary_"):
                return cls(part.build_preprocessor(), part.build_tokenizer(), part.vocabulary_)
        return None

    def count(self, texts: Sequence[str]) -> tuple[int, int]:
        """(unseen tokens, all tokens) over the texts. An n-gram vocabulary holds the unigrams
        as they are, so each token is one look-up."""
        seen = total = 0
        for text in texts:
            tokens = self.tokenize(self.preprocess(text))
            total += len(tokens)
            seen += sum(map(self.known.__contains__, tokens))
        return total - seen, total


def count_batch(vocabulary: WordVocabulary | None, thresholds: Mapping[str, float],
                texts: Sequence[str], predictions: Sequence[Prediction]) -> DriftCounts:
    """One batch's counts from the local model's predictions (before escalation) and texts;
    `thresholds` are the card's, so runs with different --llm-threshold compare."""
    counts = DriftCounts(tickets=len(predictions), vocabulary=vocabulary is not None,
                         languages=Counter(p.language for p in predictions))
    for head, threshold in thresholds.items():
        counts.low_confidence[head] = sum(p.confidence(head) < threshold for p in predictions)
    if vocabulary is not None:
        counts.unseen_tokens, counts.tokens = vocabulary.count(texts[::TOKEN_SAMPLE_EVERY])
    return counts
