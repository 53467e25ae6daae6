"""Compare two models over the same tickets before promoting one: agreement, the label-mix
shift per class, the tickets that changed label and, where the data has labels, both models'
metrics side by side, and the drift figures a classify run pushes (drift.py) for each model.
The batch-job counterpart of a blue-green switch: the new model's
output is inspected on real traffic before it replaces the old one."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .drift import DriftCounts, DriftFigures, TrainingPrior, WordVocabulary, figures, js_divergence
from .errors import ConfigError
from .evaluate import evaluate_predictions
from .io.inputs import Inputs
from .io.labelled import label_of
from .io.readers import Batch, ReadOptions
from .model import TicketModel
from .model.core import top_labels
from .model.language import detect_languages
from .schema import HEADS

EXCERPT_CHARS = 100


@dataclass(frozen=True)
class LabelChange:
    head: str
    old: str
    new: str
    old_confidence: float
    new_confidence: float


@dataclass(frozen=True)
class ChangedTicket:
    """A ticket on which the models disagree on at least one head."""

    id: str
    source: str
    line: int
    excerpt: str
    changes: tuple[LabelChange, ...]


@dataclass
class HeadComparison:
    """One head over all compared tickets; metrics only where the data has this head's labels."""

    rows: int = 0
    agreed: int = 0
    old_mix: Counter[str] = field(default_factory=Counter)
    new_mix: Counter[str] = field(default_factory=Counter)
    old_uncertain: int = 0
    new_uncertain: int = 0
    old_metrics: dict[str, Any] | None = None
    new_metrics: dict[str, Any] | None = None

    @property
    def agreement(self) -> float:
        return self.agreed / self.rows if self.rows else 1.0

    def mix(self) -> dict[str, dict[str, float]]:
        """Per label: count and share under each model, and the shift (new share - old share)."""
        n = self.rows or 1
        return {
            label: {"old": self.old_mix[label], "new": self.new_mix[label],
                    "old_share": self.old_mix[label] / n, "new_share": self.new_mix[label] / n,
                    "shift": (self.new_mix[label] - self.old_mix[label]) / n}
            for label in sorted(set(self.old_mix) | set(self.new_mix))
        }


@dataclass
class ModelDrift:
    """What one model's drift figures need beyond the head counts: its training prior and
    its word vocabulary's counts over the compared tickets (every ticket, not a sample)."""

    prior: TrainingPrior
    vocabulary: WordVocabulary | None
    unseen_tokens: int = 0
    tokens: int = 0

    @classmethod
    def of(cls, model: TicketModel) -> ModelDrift:
        return cls(TrainingPrior.from_card(model.card), WordVocabulary.of(model.vectorizer))

    def count(self, texts: Sequence[str]) -> None:
        if self.vocabulary is not None:
            unseen, total = self.vocabulary.count(texts)
            self.unseen_tokens += unseen
            self.tokens += total


@dataclass
class Comparison:
    old_version: str
    new_version: str
    heads: dict[str, HeadComparison]
    rows: int = 0
    rejected: int = 0
    changed: list[ChangedTicket] = field(default_factory=list)
    old_drift: ModelDrift = field(default_factory=lambda: ModelDrift(TrainingPrior(), None))
    new_drift: ModelDrift = field(default_factory=lambda: ModelDrift(TrainingPrior(), None))
    languages: Counter[str] = field(default_factory=Counter)  # detected; the same for both

    def drift(self, old: bool) -> DriftFigures:
        """One model's figures as a classify run pushes them."""
        side = self.old_drift if old else self.new_drift
        counts = DriftCounts(
            tickets=self.rows, tokens=side.tokens, unseen_tokens=side.unseen_tokens,
            vocabulary=side.vocabulary is not None, languages=self.languages,
            low_confidence=Counter({head: h.old_uncertain if old else h.new_uncertain
                                    for head, h in self.heads.items()}))
        mixes = {head: h.old_mix if old else h.new_mix for head, h in self.heads.items()}
        return figures(side.prior, counts, mixes, list(self.heads))

    @property
    def agreement(self) -> float:
        """Share of tickets on which the models agree on every head."""
        return 1.0 - len(self.changed) / self.rows if self.rows else 1.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "old_model": self.old_version,
            "new_model": self.new_version,
            "rows": self.rows,
            "rejected": self.rejected,
            "agreement": self.agreement,
            "changed": len(self.changed),
            "heads": {
                head: {
                    "agreement": h.agreement,
                    "old_uncertain_rate": h.old_uncertain / h.rows if h.rows else 0.0,
                    "new_uncertain_rate": h.new_uncertain / h.rows if h.rows else 0.0,
                    "mix": h.mix(),
                    **({"metrics": {"old": h.old_metrics, "new": h.new_metrics}}
                       if h.old_metrics is not None else {}),
                }
                for head, h in self.heads.items()
            },
            "drift": {
                "old": self.drift(old=True).as_dict(),
                "new": self.drift(old=False).as_dict(),
                "label_divergence_between": {
                    head: js_divergence(h.old_mix, h.new_mix) if h.rows else None
                    for head, h in self.heads.items()},
            },
            "changed_tickets": [asdict(t) for t in self.changed],
        }


@dataclass
class _Labelled:
    """True labels and both models' probabilities for the rows that carry any label."""

    truth: dict[str, list[str]]
    old: dict[str, list[np.ndarray]]
    new: dict[str, list[np.ndarray]]


def compare_models(
    old: TicketModel,
    new: TicketModel,
    inputs: Sequence[str],
    options: ReadOptions | None = None,
    label_columns: dict[str, str] | None = None,
    input_format: str | None = None,
) -> Comparison:
    """Stream the inputs once through both models. `label_columns` names each head's true-label
    column (default: the head's name); rows with an empty label are left out of that head's
    metrics, and a head with no labels at all gets none."""
    options = options or ReadOptions()
    heads = [h for h in HEADS if h in old.heads and h in new.heads]
    if not heads:
        raise ConfigError("the two models have no head in common",
                          "compare models trained for the same task")
    columns = {h: (label_columns or {}).get(h, h) for h in heads}
    result = Comparison(old.version, new.version, {h: HeadComparison() for h in heads},
                        old_drift=ModelDrift.of(old), new_drift=ModelDrift.of(new))
    labelled = _Labelled({h: [] for h in heads}, {h: [] for h in heads}, {h: [] for h in heads})
    with Inputs(inputs, options, input_format) as stream:
        for batch in stream.batches():
            result.rejected += len(batch.rejects)
            if batch.tickets:
                _compare_batch(batch, old, new, columns, result, labelled)
    for head, h in result.heads.items():
        truth = labelled.truth[head]
        if not any(truth):
            continue
        old_proba, new_proba = np.vstack(labelled.old[head]), np.vstack(labelled.new[head])
        h.old_metrics = evaluate_predictions({head: old_proba}, old.label_table(),
                                             {head: truth})[head]
        h.new_metrics = evaluate_predictions({head: new_proba}, new.label_table(),
                                             {head: truth})[head]
    return result


def _compare_batch(batch: Batch, old: TicketModel, new: TicketModel, columns: dict[str, str],
                   result: Comparison, labelled: _Labelled) -> None:
    tickets = batch.tickets
    texts = [t.text for t in tickets]
    old_proba, new_proba = old.predict_proba(texts), new.predict_proba(texts)
    result.old_drift.count(texts)
    result.new_drift.count(texts)
    result.languages.update(detect_languages(texts))
    changes: list[list[LabelChange]] = [[] for _ in tickets]
    for head, h in result.heads.items():
        old_label, old_conf = top_labels(old_proba[head], old.labels(head))
        new_label, new_conf = top_labels(new_proba[head], new.labels(head))
        h.rows += len(tickets)
        h.agreed += int((old_label == new_label).sum())
        h.old_mix.update(old_label.tolist())
        h.new_mix.update(new_label.tolist())
        h.old_uncertain += int((old_conf < old.threshold(head)).sum())
        h.new_uncertain += int((new_conf < new.threshold(head)).sum())
        for i in np.flatnonzero(old_label != new_label):
            changes[i].append(LabelChange(head, str(old_label[i]), str(new_label[i]),
                                          round(float(old_conf[i]), 4),
                                          round(float(new_conf[i]), 4)))
        truth = [label_of(t.row.get(columns[head])) for t in tickets]
        keep = [i for i, y in enumerate(truth) if y]
        if keep:
            labelled.truth[head].extend(truth[i] for i in keep)
            labelled.old[head].append(old_proba[head][keep])
            labelled.new[head].append(new_proba[head][keep])
    result.rows += len(tickets)
    result.changed.extend(
        ChangedTicket(t.id, t.source, t.line, t.text[:EXCERPT_CHARS], tuple(c))
        for t, c in zip(tickets, changes, strict=True) if c
    )
