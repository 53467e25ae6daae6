"""Token estimates, for --dry-run (prices are declared by each backend)."""

from __future__ import annotations

from .base import Usage
from .prompt import SYSTEM_INSTRUCTION, user_message

# Google's rule of thumb is about four characters a token for English text.
CHARS_PER_TOKEN = 4
# A JSON answer is ~25 tokens; low-effort thinking adds some more.
ESTIMATED_OUTPUT_TOKENS = 60


def estimate_usage(redacted_text: str) -> Usage:
    """Tokens one request for this ticket would use, estimated without calling anything."""
    chars = len(SYSTEM_INSTRUCTION) + len(user_message(redacted_text))
    return Usage(-(-chars // CHARS_PER_TOKEN), ESTIMATED_OUTPUT_TOKENS)
