"""Scores for one head: accuracy, macro-F1, per-class scores, confusion matrix, calibration
(ECE and a reliability table) and risk–coverage; and the scores of a model (and of the
model + LLM hybrid) on labelled tickets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from .model.core import TicketModel, predictions_from_proba, top_labels
from .pipeline import Escalator, Thresholds
from .schema import Prediction

if TYPE_CHECKING:
    from .io.labelled import LabelledTickets
    from .llm import EscalationStats

COVERAGES = (0.5, 0.7, 0.8, 0.9, 1.0)
ECE_BINS = 15


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray,
                               bins: int = ECE_BINS) -> float:
    """Weighted mean gap between confidence and accuracy over equal-width confidence bins."""
    return float(sum(b["count"] * abs(b["confidence"] - b["accuracy"])
                     for b in reliability(confidence, correct, bins)) / max(len(confidence), 1))


def reliability(confidence: np.ndarray, correct: np.ndarray,
                bins: int = ECE_BINS) -> list[dict[str, float]]:
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    table = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            table.append({"low": float(edges[b]), "high": float(edges[b + 1]),
                          "count": int(mask.sum()), "confidence": float(confidence[mask].mean()),
                          "accuracy": float(correct[mask].mean())})
    return table


def risk_coverage(confidence: np.ndarray, correct: np.ndarray,
                  coverages: Sequence[float] = COVERAGES) -> list[dict[str, float]]:
    """Accuracy of the most confident fraction of predictions, and the threshold that keeps it."""
    order = np.argsort(-confidence, kind="stable")
    rows = []
    for cov in coverages:
        k = max(1, int(round(cov * len(order))))
        kept = order[:k]
        rows.append({"coverage": cov, "accuracy": float(correct[kept].mean()),
                     "threshold": float(confidence[kept[-1]])})
    return rows


def threshold_for_precision(confidence: np.ndarray, correct: np.ndarray, target: float,
                            min_kept: int = 20) -> float:
    """The lowest confidence threshold at which the kept predictions are at least `target`
    accurate (1.0 when no threshold reaches it)."""
    order = np.argsort(-confidence, kind="stable")
    hits = np.cumsum(correct[order])
    precision = hits / np.arange(1, len(order) + 1)
    if len(order) < min_kept:
        return 1.0
    ok = np.nonzero(precision[min_kept - 1:] >= target)[0]
    if len(ok) == 0:
        return 1.0
    return float(confidence[order[ok[-1] + min_kept - 1]])


def head_metrics(y_true: Sequence[str] | np.ndarray, y_pred: Sequence[str] | np.ndarray,
                 confidence: np.ndarray,
                 labels: Sequence[str]) -> dict[str, Any]:
    y_true_a, y_pred_a = np.asarray(y_true), np.asarray(y_pred)
    correct = (y_true_a == y_pred_a).astype(float)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true_a, y_pred_a, labels=list(labels), zero_division=0)
    return {
        "n": int(len(y_true_a)),
        "accuracy": float(accuracy_score(y_true_a, y_pred_a)),
        "macro_f1": float(f1_score(y_true_a, y_pred_a, labels=list(labels), average="macro",
                                   zero_division=0)),
        "ece": expected_calibration_error(confidence, correct),
        "per_class": {lab: {"precision": float(p), "recall": float(r), "f1": float(f),
                            "support": int(s)}
                      for lab, p, r, f, s in zip(labels, precision, recall, f1, support,
                                                 strict=True)},
        "labels": list(labels),
        "confusion": confusion_matrix(y_true_a, y_pred_a, labels=list(labels)).tolist(),
        "reliability": reliability(confidence, correct),
        "risk_coverage": risk_coverage(confidence, correct),
        "risk_coverage_curve": risk_coverage(confidence, correct,
                                             [k / 20 for k in range(1, 21)]),
    }


def evaluate_predictions(proba: dict[str, np.ndarray], model_labels: dict[str, list[str]],
                         truth: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """Metrics for every head that has both predictions and true labels (rows with an empty
    label are left out of that head)."""
    decided = {head: top_labels(p, model_labels[head]) for head, p in proba.items()}
    return evaluate_labels(decided, model_labels, truth)


def evaluate_labels(decided: Mapping[str, tuple[Sequence[str] | np.ndarray, np.ndarray]],
                    model_labels: dict[str, list[str]],
                    truth: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """Like evaluate_predictions, from each row's chosen label and its confidence (what a
    hybrid model/LLM decision gives)."""
    report: dict[str, Any] = {}
    for head, y_true in truth.items():
        if head not in decided:
            continue
        y = np.asarray(y_true, dtype=object)
        mask = y != ""
        pred = np.asarray(decided[head][0], dtype=object)[mask]
        conf = np.asarray(decided[head][1], dtype=float)[mask]
        labels = sorted(set(model_labels[head]) | set(y[mask]))
        report[head] = head_metrics(y[mask], pred, conf, labels)
    return report


def evaluate_model(model: TicketModel, data: LabelledTickets, source: str,
                   escalator: Escalator | None = None, counters: EscalationStats | None = None,
                   threshold: float | None = None) -> dict[str, Any]:
    """The scores of `model` on labelled tickets; with an escalator, also the hybrid's (what
    classify would decide with the LLM on), with the escalation counts from `counters`."""
    from .model.language import detect_languages

    proba = model.predict_proba(data.texts)
    labels = model.label_table()
    local = predictions_from_proba(proba, labels, detect_languages(data.texts))
    thresholds = Thresholds.from_model(model, threshold)
    result: dict[str, Any] = {
        "model_version": model.version, "data": source, "rows": len(data),
        "rejected": data.rejected,
        "at_thresholds": headline(local, thresholds, data.labels),
        "heads": evaluate_predictions(proba, labels, data.labels)}
    if escalator is None:
        return result
    from .llm import hybrid_predictions

    hybrid = hybrid_predictions(escalator, data.texts, local, thresholds)
    decided = {head: ([p.label(head) for p in hybrid.predictions],
                      np.array([p.confidence(head) for p in hybrid.predictions]))
               for head in proba}
    result["hybrid"] = {
        "escalation_rate": hybrid.escalation_rate,
        "decided_by_llm": hybrid.decided_by.count("llm"),
        **({"llm_requests": dict(counters.llm_requests),
            "cache_lookups": dict(counters.cache_lookups)} if counters is not None else {}),
        "heads": evaluate_labels(decided, labels, data.labels)}
    return result


def headline(predictions: Sequence[Prediction], thresholds: Thresholds,
            truth: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """The headline: the share of tickets a run would flag (escalate, or mark needs_review)
    at these thresholds, and how right the kept ones are, per head with labels."""
    flagged = np.array([thresholds.uncertain(p) for p in predictions], dtype=bool)
    kept_accuracy = {}
    for head, y in truth.items():
        rows = [i for i, label in enumerate(y) if label and not flagged[i]]
        if rows:
            kept_accuracy[head] = float(np.mean([predictions[i].label(head) == y[i]
                                                 for i in rows]))
    return {"thresholds": dict(thresholds.by_head),
            "flagged": float(flagged.mean()) if len(flagged) else 0.0,
            "kept_accuracy": kept_accuracy}
