"""LLM escalation: the tickets the local model is unsure of go, redacted, to an LLM backend.

`llm_config` turns what the user asked for (an `LLMChoice`) into an `LLMConfig`, or None when
the step is off; `open_escalator` builds the step from it; `hybrid_predictions` runs it over
an evaluation set for `evaluate --llm`. Only `registry` knows which backends exist.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..cache import AnswerCache
from ..config import default_cache_dir, secret, secret_source
from ..errors import ConfigError, UsageError
from ..pipeline import Escalator, Thresholds, decide
from ..schema import Prediction, Ticket
from ..taxonomy import DEFAULT_TAXONOMY, Taxonomy
from .base import Connection, LLMBackend, Prices
from .escalator import (
    CachedEscalation,
    DryRunEscalator,
    DryRunEstimate,
    EscalationSettings,
    EscalationStats,
    LLMEscalator,
)
from .limits import RetryPolicy
from .prompt import Prompt
from .registry import BACKENDS, DEFAULT_BACKEND, backend_class

__all__ = [
    "BACKENDS", "DEFAULT_BACKEND", "DEFAULT_TIMEOUT_SECONDS", "CachedEscalation",
    "DryRunEscalator", "DryRunEstimate", "EscalationSettings",
    "EscalationStats", "HybridPredictions", "LLMChoice", "LLMConfig", "LLMEscalator", "Prices",
    "RetryPolicy", "backend_class", "endpoint_problem", "hybrid_predictions", "llm_config",
    "open_escalator",
]

DEFAULT_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class LLMConfig:
    """A resolved escalation step: which backend, as whom, where, and its limits."""

    api_key: str | None
    model: str | None = None  # None: the backend's default model
    base_url: str | None = None  # None: the backend's environment variable, else its service
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    cache_dir: Path | None = None  # None: no cache
    settings: EscalationSettings = field(default_factory=EscalationSettings)
    backend: str = DEFAULT_BACKEND

    def connection(self, backend: type[LLMBackend]) -> Connection:
        return Connection(self.api_key, self.model or backend.default_model,
                          self.base_url or os.environ.get(backend.base_url_variable) or None,
                          self.timeout_seconds)


@dataclass(frozen=True)
class LLMChoice:
    """What the command line asked of the LLM step; `llm_config` decides what it means."""

    # --llm / --no-llm; None: on exactly when a key is configured, or for a backend that
    # needs no key (a local server), when its endpoint is
    enabled: bool | None = None
    backend: str = DEFAULT_BACKEND
    model: str | None = None
    base_url: str | None = None
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    cache_dir: Path | None = None  # None: the default cache directory
    use_cache: bool = True
    settings: EscalationSettings = field(default_factory=EscalationSettings)
    dry_run: bool = False


def llm_config(choice: LLMChoice) -> LLMConfig | None:
    """The step's configuration, or None when it is off. A broken key file does not stop
    --no-llm: the key is read only when the step may run."""
    if choice.enabled is False:
        if choice.dry_run:
            raise UsageError("--dry-run estimates the LLM step, which --no-llm turns off",
                             "drop one of the two")
        return None
    backend = backend_class(choice.backend)
    key = secret(backend.key_variable)
    endpoint = not backend.key_required and bool(
        choice.base_url or os.environ.get(backend.base_url_variable))
    if not (choice.enabled or key or endpoint or choice.dry_run):
        return None
    return LLMConfig(
        api_key=key, model=choice.model, base_url=choice.base_url,
        timeout_seconds=choice.timeout_seconds,
        cache_dir=(choice.cache_dir or default_cache_dir()) if choice.use_cache else None,
        settings=choice.settings, backend=backend.name)


def key_status(backend_name: str) -> tuple[type[LLMBackend], str | None]:
    """The backend and where its key comes from (a variable's name; never the key)."""
    backend = backend_class(backend_name)
    return backend, secret_source(backend.key_variable)


def endpoint_problem(choice: LLMChoice) -> str | None:
    """What keeps the step's backend from answering (`doctor`), or None; None too when the
    step is off. Sends no ticket."""
    config = llm_config(choice)
    if config is None:
        return None
    backend_cls = backend_class(config.backend)
    backend = backend_cls(config.connection(backend_cls), Prompt())
    try:
        return backend.problem()
    finally:
        backend.close()


def open_escalator(config: LLMConfig, counters: EscalationStats | None = None,
                   dry_run: bool = False, taxonomy: Taxonomy = DEFAULT_TAXONOMY
                   ) -> CachedEscalation:
    """The escalation step for a model's taxonomy, owning its cache and client: use it as a
    context manager. A dry run needs no key; a real one raises ConfigError when the backend
    needs one."""
    backend = backend_class(config.backend)
    connection = config.connection(backend)
    settings = config.settings if config.settings.prices is not None else replace(
        config.settings, prices=backend.price(connection.model))
    cache = AnswerCache(config.cache_dir) if config.cache_dir is not None else None
    if dry_run:
        return DryRunEscalator(backend.name, connection.model, cache, settings, counters,
                               Prompt(taxonomy))
    if backend.key_required and not config.api_key:
        if cache is not None:
            cache.close()
        raise ConfigError(f"LLM escalation through {backend.name} needs an API key",
                          f"set {backend.key_variable} or {backend.key_variable}_FILE, "
                          "or pass --no-llm")
    return LLMEscalator(backend(connection, Prompt(taxonomy)), cache, settings, counters)


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
