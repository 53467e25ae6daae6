"""A models directory: each model in a directory named by its version, and a pointer file
naming the one in use and the one before it (for rollback).

    MODELS_DIR/
      3f2a9c01b7de/      model.skops, card.json, training.csv.gz, holdout.csv.gz
      9b0e44a1c2f3/
      current.json       {"current": "9b0e44a1c2f3", "previous": "3f2a9c01b7de", ...}

The pointer is a small file replaced atomically (write, fsync, os.replace), not a symlink:
it works the same on every volume type (SMB shares such as Azure Files have no symlinks), and
one replace switches current and previous together. `--model MODELS_DIR` (or its
current.json) loads the current model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import ConfigError, OutputError, UsageError
from ..io.writers import AtomicFile

POINTER = "current.json"
PREVIOUS = "PREVIOUS"  # `promote --to PREVIOUS`
HISTORY_KEPT = 20  # promotions remembered in the pointer, newest first


@dataclass(frozen=True)
class Pointer:
    current: str
    previous: str | None
    history: tuple[dict[str, str], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"current": self.current, "previous": self.previous,
                "history": list(self.history)}


def is_models_dir(path: Path) -> bool:
    return (path / POINTER).is_file()


def read_pointer(models_dir: Path) -> Pointer | None:
    """The pointer, or None when the directory has none yet."""
    path = models_dir / POINTER
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Pointer(str(data["current"]), data.get("previous"),
                       tuple(data.get("history") or ()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"model pointer {path} is unreadable: {exc}",
                          "restore it, or point it again with `ticketclf promote --to VERSION`"
                          ) from exc


def current_model_dir(models_dir: Path) -> Path:
    """The model directory the pointer selects."""
    pointer = read_pointer(models_dir)
    if pointer is None:
        raise ConfigError(f"{models_dir} has no {POINTER}",
                          "adopt a model first: ticketclf promote --models-dir DIR --to MODEL")
    return models_dir / pointer.current


def versions(models_dir: Path) -> list[str]:
    """The model directories present, by name."""
    if not models_dir.is_dir():
        return []
    return sorted(p.name for p in models_dir.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / "card.json").is_file())


def add_model(models_dir: Path, model_dir: Path, version: str) -> Path:
    """Place a model directory in the models directory under its version: a copy made beside
    the target, then one rename, so a half-copied model is never visible under a version name.
    An existing version is kept (same version, same bytes)."""
    target = models_dir / version
    if target.is_dir():
        return target
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=models_dir))
        try:
            shutil.copytree(model_dir, staging, dirs_exist_ok=True)
            os.rename(staging, target)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            if not target.is_dir():
                raise
            # another process placed the same version first (pods adopting at once)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    except OSError as exc:
        raise OutputError(f"cannot add model {version} to {models_dir}: {exc.strerror or exc}",
                          "check the models directory's permissions and free space") from exc
    return target


def point_to(models_dir: Path, version: str, reason: str) -> Pointer:
    """Make `version` current (atomically); the one it replaces becomes previous."""
    if not (models_dir / version / "card.json").is_file():
        raise UsageError(f"no model {version!r} in {models_dir}",
                         f"versions present: {', '.join(versions(models_dir)) or '(none)'}")
    old = read_pointer(models_dir)
    if old is not None and old.current == version:
        return old
    entry = {"version": version, "at": datetime.now(UTC).replace(microsecond=0).isoformat(),
             "reason": reason}
    pointer = Pointer(version, old.current if old else None,
                      (entry, *(old.history if old else ()))[:HISTORY_KEPT])
    with AtomicFile(models_dir / POINTER) as f:
        f.write((json.dumps(pointer.as_dict(), indent=2) + "\n").encode())
    return pointer


def resolve_target(models_dir: Path, to: str) -> str:
    """`promote --to`: PREVIOUS, a version in the directory, or a model directory elsewhere
    (copied in: adopting the shipped model, say)."""
    if to == PREVIOUS:
        pointer = read_pointer(models_dir)
        if pointer is None or not pointer.previous:
            raise UsageError(f"{models_dir} has no previous model to roll back to")
        return pointer.previous
    if "/" not in to and (models_dir / to / "card.json").is_file():
        return to
    source = Path(to)
    if (source / "card.json").is_file():
        from .store import load_artifacts

        _artifacts, card = load_artifacts(source)  # refuse a damaged model before adopting it
        return add_model(models_dir, source, str(card["version"])).name
    raise UsageError(f"no model {to!r}", "give PREVIOUS, a version in the models directory or "
                     f"a model directory; versions present: "
                     f"{', '.join(versions(models_dir)) or '(none)'}")
