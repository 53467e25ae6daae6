"""LLM escalation: the tickets the local model is unsure of go, redacted, to Gemini.

`open_escalator` builds the step from an `LLMConfig` (the CLI does this for `classify`);
`hybrid_predictions` runs it over an evaluation set for `evaluate --llm`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..cache import AnswerCache
from ..errors import ConfigError
from ..pipeline import Escalator, Thresholds, decide
from ..schema import Prediction, Ticket
from .cost import Prices
from .escalator import (
    CachedEscalation,
    DryRunEscalator,
    DryRunEstimate,
    EscalationCounters,
    EscalationSettings,
    EscalationStats,
    LLMEscalator,
)
from .limits import RetryPolicy

__all__ = [
    "DEFAULT_MODEL", "DEFAULT_TIMEOUT_SECONDS", "CachedEscalation", "DryRunEscalator",
    "DryRunEstimate", "EscalationCounters", "EscalationSettings", "EscalationStats",
    "HybridPredictions", "LLMConfig", "LLMEscalator", "Prices", "RetryPolicy",
    "hybrid_predictions", "open_escalator",
]

DEFAULT_MODEL = "gemini-3.8-flash"
DEFAULT_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class LLMConfig:
    api_key: str | None
    model: str = DEFAULT_MODEL
    base_url: str | None = None  # a proxy, or the fake server in tests
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    cache_dir: Path | None = None  # None: no cache
    settings: EscalationSettings = field(default_factory=EscalationSettings)


def open_escalator(config: LLMConfig, counters: EscalationCounters | None = None,
                   dry_run: bool = False) -> CachedEscalation:
    """The escalation step, owning its cache and client: use it as a context manager.

    A dry run needs no key; a real one raises ConfigError without one.
    """
    cache = AnswerCache(config.cache_dir) if config.cache_dir is not None else None
    if dry_run:
        return DryRunEscalator(config.model, cache, config.settings, counters)
    if not config.api_key:
        if cache is not None:
            cache.close()
        raise ConfigError("LLM escalation needs a Gemini API key",
                          "set GEMINI_API_KEY or GEMINI_API_KEY_FILE, or pass --no-llm")
    from .gemini import GeminiBackend  # imported only when used: the SDK takes ~0.6 s

    backend = GeminiBackend(config.api_key, config.model, config.timeout_seconds,
                            config.base_url)
    return LLMEscalator(backend, cache, config.settings, counters)


@dataclass
class HybridPredictions:
    """Local predictions with the uncertain ones replaced by the escalation step's."""

    predictions: list[Prediction]
    decided_by: list[str]  # "model" or "llm", per ticket
    escalated: int  # tickets below a threshold, handed to the escalator

    @property
    def escalation_rate(self) -> float:
        return self.escalated / len(self.predictions) if self.predictions else 0.0


def hybrid_predictions(escalator: Escalator, texts: Sequence[str],
                       local: Sequence[Prediction], thresholds: Thresholds,
                       batch_size: int = 1000) -> HybridPredictions:
    """What `classify` would decide for these texts, given the local model's predictions:
    the same thresholds and the same escalation step, in batches like a run."""
    if len(texts) != len(local):
        raise ValueError("texts and local predictions differ in length")
    predictions: list[Prediction] = []
    decided_by: list[str] = []
    for start in range(0, len(texts), batch_size):
        tickets = [Ticket("evaluate", i + 1, str(i), texts[i], {})
                   for i in range(start, min(start + batch_size, len(texts)))]
        for d in decide(tickets, local[start:start + batch_size], thresholds, escalator):
            predictions.append(d.prediction)
            decided_by.append(d.decided_by)
    escalated = sum(thresholds.uncertain(p) for p in local)
    return HybridPredictions(predictions, decided_by, escalated)
