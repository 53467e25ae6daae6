"""A model's labels and what each one means: the taxonomy. The LLM prompt, its answer schema
and the validation of answers are built from it, so a model trained on its own labels gets
LLM answers in those labels only. The built-in telecom taxonomy is the default."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .schema import CATEGORY_DESCRIPTIONS, SENTIMENT_DESCRIPTIONS

DEFAULT_BUSINESS = "a telecom operator (mobile, broadband, TV, landline)"


@dataclass(frozen=True)
class Taxonomy:
    """Per head, its labels in order, each with a description; and the business they serve."""

    heads: Mapping[str, Mapping[str, str]]
    business: str = DEFAULT_BUSINESS
    extra: Mapping[str, Any] = field(default_factory=dict)  # further sections, kept as given

    def labels(self, head: str) -> tuple[str, ...]:
        return tuple(self.heads.get(head, {}))

    def as_dict(self) -> dict[str, Any]:
        return {"business": self.business,
                "heads": {h: dict(labels) for h, labels in self.heads.items()},
                **({"extra": dict(self.extra)} if self.extra else {})}

    @property
    def hash(self) -> str:
        """Changes whenever a label, a description or the business changes."""
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()
                              ).hexdigest()[:16]


DEFAULT_TAXONOMY = Taxonomy({"category": dict(CATEGORY_DESCRIPTIONS),
                             "sentiment": dict(SENTIMENT_DESCRIPTIONS)})
