"""The LLM backends by name. Each entry names the module and class that implement it; the
module is imported only when that backend is chosen (each SDK takes its time to import)."""

from __future__ import annotations

import importlib

from ..errors import UsageError
from .base import LLMBackend

DEFAULT_BACKEND = "gemini"
BACKENDS: dict[str, str] = {
    "gemini": "ticketclf.llm.gemini:GeminiBackend",
    "openai": "ticketclf.llm.openai_compat:OpenAIBackend",
}


def backend_class(name: str) -> type[LLMBackend]:
    """The backend registered under `name`; a UsageError naming the known ones otherwise."""
    try:
        module_name, _, class_name = BACKENDS[name].partition(":")
    except KeyError:
        raise UsageError(f"unknown LLM backend {name!r}",
                         f"use one of: {', '.join(sorted(BACKENDS))}") from None
    cls: type[LLMBackend] = getattr(importlib.import_module(module_name), class_name)
    return cls
