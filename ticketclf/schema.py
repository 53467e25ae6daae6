"""The taxonomy and the records that flow through a run."""

from __future__ import annotations

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

# The columns a run appends to every input row, in this order (DESIGN.md §2).
RESULT_COLUMNS: tuple[str, ...] = (
    "category",
    "category_confidence",
    "sentiment",
    "sentiment_confidence",
    "priority",
    "decided_by",
    "cached",
    "needs_review",
    "model_version",
)

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


@dataclass(slots=True)
class Prediction:
    """A label and its confidence for each head."""

    category: str
    category_confidence: float
    sentiment: str
    sentiment_confidence: float


@dataclass(slots=True)
class Result:
    ticket: Ticket
    prediction: Prediction
    priority: str
    decided_by: DecidedBy = "model"
    cached: bool = False
    needs_review: bool = False
    model_version: str = ""

    def values(self) -> tuple[Any, ...]:
        """The result columns' values, typed, in RESULT_COLUMNS order (the writer decides how
        each is spelled)."""
        p = self.prediction
        return (p.category, round(p.category_confidence, 4), p.sentiment,
                round(p.sentiment_confidence, 4), self.priority, self.decided_by, self.cached,
                self.needs_review, self.model_version)

    def columns(self) -> dict[str, Any]:
        return dict(zip(RESULT_COLUMNS, self.values(), strict=True))
