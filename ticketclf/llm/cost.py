"""Prices and token estimates, for the run summary and for --dry-run."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Usage
from .prompt import SYSTEM_INSTRUCTION, user_message

# USD per million tokens for the default model (gemini-3.8-flash, Gemini API paid tier,
# standard, text). Google lists these as the promotional rate until 2026-12-31; from
# 2027-01-01 they are 1.50 / 7.50. Thinking tokens are billed as output.
DEFAULT_INPUT_PRICE = 0.75
DEFAULT_OUTPUT_PRICE = 3.75

# Google's rule of thumb is about four characters a token for English text.
CHARS_PER_TOKEN = 4
# A JSON answer is ~25 tokens; low-effort thinking adds some more.
ESTIMATED_OUTPUT_TOKENS = 60


@dataclass(frozen=True)
class Prices:
    """USD per million tokens."""

    input_per_million: float = DEFAULT_INPUT_PRICE
    output_per_million: float = DEFAULT_OUTPUT_PRICE

    def cost(self, usage: Usage) -> float:
        return (usage.input_tokens * self.input_per_million
                + usage.output_tokens * self.output_per_million) / 1_000_000


def estimate_usage(redacted_text: str) -> Usage:
    """Tokens one request for this ticket would use, estimated without calling anything."""
    chars = len(SYSTEM_INSTRUCTION) + len(user_message(redacted_text))
    return Usage(-(-chars // CHARS_PER_TOKEN), ESTIMATED_OUTPUT_TOKENS)
