"""Settings that come from the environment: flag > TICKETCLF_* env > default.

Flags with an env fallback are declared on the Typer options themselves (`envvar=`); this
module holds the defaults that need code (the model path) and secrets, which are read from
an env var or from a mounted file (`*_FILE`) and never printed.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError

ENV_MODEL = "TICKETCLF_MODEL"
DEFAULT_JOB = "ticketclf"  # the `job` label of pushed metrics
# The shipped default model, beside the package in a checkout (editable install) and at
# /app/models/default in the container, where TICKETCLF_MODEL points.
SHIPPED_MODEL = Path(__file__).resolve().parent.parent / "models" / "default"


def model_path(flag: Path | None) -> Path:
    if flag is not None:
        return flag
    env = os.environ.get(ENV_MODEL)
    return Path(env) if env else SHIPPED_MODEL


def secret(name: str) -> str | None:
    """`NAME` from the environment, else the contents of the file named by `NAME_FILE`."""
    value = os.environ.get(name)
    if value:
        return value.strip()
    file_name = os.environ.get(f"{name}_FILE")
    if not file_name:
        return None
    try:
        value = Path(file_name).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {name}_FILE ({file_name}): {exc.strerror}",
                          "check that the secret is mounted") from exc
    return value or None


def secret_source(name: str) -> str | None:
    """Which variable a secret comes from (for `doctor`; never the secret itself)."""
    return next((n for n in (name, f"{name}_FILE") if os.environ.get(n)), None)


def default_cache_dir() -> Path:
    """Where LLM answers are cached without --cache-dir / TICKETCLF_CACHE_DIR."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ticketclf"
