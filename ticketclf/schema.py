"""The taxonomy and the records that flow through a run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

CATEGORY_DESCRIPTIONS: dict[str, str] = {
    "BILLING": "charges, bills, payments, refunds, direct debit, unexpected fees, price rises, "
    "top-ups not credited",
    "TECHNICAL": "customer-side equipment/app/service faults and setup: router, TV box, Wi-Fi, "
    "SIM not recognised, voicemail, installation",
    "NETWORK": "outages, no signal or coverage, slowness or drops caused by the network, "
    "dropped calls, area-wide problems",
    "ACCOUNT": "login/password, personal details, ownership transfer, SIM swap, porting in, "
    "lost/stolen phone, fraud, privacy requests",
    "PLAN": "sign-up, upgrade/downgrade, tariff info, add-ons, roaming, renewal, new device, "
    "moving address",
    "CANCELLATION": "wants to cancel, terminate, leave or switch provider; port-out codes; "
    "disputes about cancelling",
    "GENERAL": "praise, thanks, general questions, feedback about staff, anything else",
}
SENTIMENT_DESCRIPTIONS: dict[str, str] = {
    "POSITIVE": "friendly, pleased or thankful",
    "NEUTRAL": "matter-of-fact question or request",
    "NEGATIVE": "unhappy or annoyed, not escalating",
    "CRITICAL": "furious or escalating: threats to leave, legal action, regulator or media; "
    "repeated failed contacts; vulnerable customers or safety risk; business losing money",
}
CATEGORIES: tuple[str, ...] = tuple(CATEGORY_DESCRIPTIONS)
SENTIMENTS: tuple[str, ...] = tuple(SENTIMENT_DESCRIPTIONS)
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
    return (Column(head, lambda r: r.prediction.label(head)),
            Column(f"{head}_confidence", lambda r: round(r.prediction.confidence(head), 4)))


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
