"""The built-in labels and the records that flow through a run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

# The built-in taxonomy's labels (DESIGN.md section 2), which the shipped model predicts; what
# each one means, and the priority rules, are in ticketclf/taxonomies/telecom.toml.
CATEGORIES: tuple[str, ...] = ("BILLING", "TECHNICAL", "NETWORK", "ACCOUNT", "PLAN",
                               "CANCELLATION", "GENERAL")
SENTIMENTS: tuple[str, ...] = ("POSITIVE", "NEUTRAL", "NEGATIVE", "CRITICAL")
PRIORITIES: tuple[str, ...] = ("LOW", "MEDIUM", "HIGH", "URGENT")
HEADS: tuple[str, ...] = ("category", "sentiment")
LABELS: dict[str, tuple[str, ...]] = {"category": CATEGORIES, "sentiment": SENTIMENTS}

DecidedBy = Literal["model", "llm"]


@dataclass(slots=True)
class Ticket:
    """One accepted input row: its source position, id, text, and all its columns."""

    source: str
    line: int
    id: str
    text: str
    row: dict[str, Any]


@dataclass(slots=True)
class Reject:
    """An input row that could not be classified, with where it was and why."""

    source: str
    line: int
    reason: str
    excerpt: str

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "line": self.line, "reason": self.reason,
                "excerpt": self.excerpt}


@dataclass(frozen=True, slots=True)
class Prediction:
    """Each head's chosen label and its confidence (0-1), a head without an answer being
    absent; and the ticket's language (ISO 639-1, "und" when it cannot be told)."""

    labels: dict[str, str]
    confidences: dict[str, float]
    language: str = ""

    def label(self, head: str) -> str:
        return self.labels.get(head, "")

    def confidence(self, head: str) -> float:
        return self.confidences.get(head, 0.0)

    def replace(self, head: str, label: str, confidence: float) -> Prediction:
        return Prediction({**self.labels, head: label}, {**self.confidences, head: confidence},
                          self.language)

    def __reduce__(self) -> tuple[type[Prediction], tuple[dict[str, str], dict[str, float], str]]:
        # Workers send predictions back pickled; a frozen slots dataclass unpickles through
        # dataclasses' generic setstate, which looks its fields up once per object.
        return Prediction, (self.labels, self.confidences, self.language)


@dataclass(slots=True)
class Result:
    ticket: Ticket
    prediction: Prediction
    priority: str
    decided_by: DecidedBy = "model"
    cached: bool = False
    needs_review: bool = False
    model_version: str = ""


@dataclass(frozen=True, slots=True)
class Column:
    """One result column: its name and how its typed value comes from a Result (the writers
    decide how each value is spelled)."""

    name: str
    value: Callable[[Result], Any]


def _head_columns(head: str) -> tuple[Column, Column]:
    return (Column(head, lambda r: r.prediction.labels.get(head, "")),
            Column(f"{head}_confidence",
                   lambda r: round(r.prediction.confidences.get(head, 0.0), 4)))


# The columns a run appends to every input row, in this order (DESIGN.md §2). A new output
# column is one entry here.
RESULT_COLUMNS: tuple[Column, ...] = (
    *_head_columns("category"),
    *_head_columns("sentiment"),
    Column("priority", lambda r: r.priority),
    Column("decided_by", lambda r: r.decided_by),
    Column("cached", lambda r: r.cached),
    Column("needs_review", lambda r: r.needs_review),
    Column("model_version", lambda r: r.model_version),
    Column("language", lambda r: r.prediction.language),
)
RESULT_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in RESULT_COLUMNS)


def result_values(result: Result) -> list[Any]:
    """The result columns' values, typed, in RESULT_COLUMNS order."""
    return [c.value(result) for c in RESULT_COLUMNS]
