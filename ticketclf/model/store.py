"""Model files: a skops archive plus a JSON model card that pins its SHA-256.

Loading never runs pickle: skops rebuilds only the types listed in TRUSTED_TYPES and refuses
anything else, and a file whose hash differs from its card is refused before it is parsed.
The card seals itself too (`card_sha256`, over its own canonical JSON), so hand-edited
thresholds or labels are refused rather than silently used.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, OutputError
from ..io.writers import AtomicFile

if TYPE_CHECKING:
    from .core import TicketModel

MODEL_FILE = "model.skops"
CARD_FILE = "card.json"

# Every type a model made by `ticketclf train` contains; skops refuses any other.
TRUSTED_TYPES = [
    "builtins.slice",
    "numpy.dtype",
    "numpy.float64",
    "numpy.int64",
    "numpy.ndarray",
    "scipy.sparse._csr.csr_matrix",
    "sklearn.ensemble._stacking.StackingClassifier",
    "sklearn.feature_extraction.text.TfidfTransformer",
    "sklearn.feature_extraction.text.TfidfVectorizer",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.pipeline.FeatureUnion",
    "sklearn.preprocessing._label.LabelEncoder",
    "sklearn.svm._classes.LinearSVC",
    "sklearn.utils._bunch.Bunch",
    "ticketclf.model.encoder.SentenceEncoder",
    "ticketclf.model.neighbours.NeighbourProduct",
    "ticketclf.model.static.StaticEmbedding",
    "ticketclf.model.tfidf.CompactTfidf",
]


def _import_skops_io() -> Any:
    """skops.io, imported with an empty default allow-list.

    On import, skops lists every scikit-learn estimator (`all_estimators()`, which imports
    every scikit-learn module) as trusted by default, and adds that list to any `trusted=`
    given. We always pass TRUSTED_TYPES, so the default only widened what loads, while
    building it slowed every process's start, and checking each node against it the load
    (bench/RESULTS.md). With it empty, exactly TRUSTED_TYPES (plus skops' primitives and
    containers) load."""
    import sys

    if "skops.io" in sys.modules:
        return sys.modules["skops.io"]
    import sklearn.utils

    listed = sklearn.utils.all_estimators
    sklearn.utils.all_estimators = lambda *_args, **_kwargs: []
    try:
        import skops.io
    finally:
        sklearn.utils.all_estimators = listed
    return skops.io


sio = _import_skops_io()


def resolve_model_dir(path: Path) -> Path:
    """Accept the model directory or either file in it, or a models directory (or its
    pointer file): then the model it points to (versions.py)."""
    from .versions import POINTER, current_model_dir, is_models_dir

    if path.is_file() and path.name == POINTER or is_models_dir(path):
        return current_model_dir(path.parent if path.is_file() else path)
    return path.parent if path.is_file() else path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_OBJECT_ID = re.compile(r'("__id__": )(\d+)|"(\d+)\.npy"')


def reproducible_zip(data: bytes) -> bytes:
    """Rewrite a skops archive so that equal models give equal bytes.

    skops names arrays and shared objects by `id()` (a memory address) and zip entries carry
    the time of writing; both are renumbered / fixed here, in order of first appearance.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as src:
        schema = src.read("schema.json").decode()
        arrays = {name: src.read(name) for name in src.namelist() if name != "schema.json"}
    renumbered: dict[str, str] = {}

    def renumber(match: re.Match[str]) -> str:
        number = match.group(2) or match.group(3)
        new = renumbered.setdefault(number, str(len(renumbered) + 1))
        return f"{match.group(1)}{new}" if match.group(2) else f'"{new}.npy"'

    schema = _OBJECT_ID.sub(renumber, schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as dst:
        entries = [("schema.json", schema.encode())]
        entries += sorted((f"{renumbered[name.removesuffix('.npy')]}.npy", body)
                          for name, body in arrays.items())
        for name, body in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            dst.writestr(info, body)
    return out.getvalue()


def save_model(model_dir: Path, artifacts: dict[str, Any], card: dict[str, Any]) -> dict[str, Any]:
    """Write the archive and its card (both atomically); returns the card as written."""
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {model_dir}: {exc.strerror}") from exc
    data = reproducible_zip(sio.dumps(artifacts))
    sha = hashlib.sha256(data).hexdigest()
    with AtomicFile(model_dir / MODEL_FILE) as f:
        f.write(data)
    return write_card(model_dir, {**card, "version": sha[:12], "model_file": MODEL_FILE,
                                  "sha256": sha, "size_bytes": len(data)})


def write_card(model_dir: Path, card: dict[str, Any]) -> dict[str, Any]:
    """Seal the card and write it atomically (the only way a card is written, so none is ever
    written with a stale seal); returns it as written."""
    card = seal_card(card)
    with AtomicFile(model_dir / CARD_FILE) as f:
        f.write((json.dumps(card, indent=2, sort_keys=False) + "\n").encode())
    return card


def card_digest(card: dict[str, Any]) -> str:
    """SHA-256 of the card's canonical JSON (sorted keys, no whitespace), without its seal."""
    body = {k: v for k, v in card.items() if k != "card_sha256"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                           allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def seal_card(card: dict[str, Any]) -> dict[str, Any]:
    """The card with `card_sha256` set over the rest of it (last, so it reads as a footer)."""
    body = {k: v for k, v in card.items() if k != "card_sha256"}
    return {**body, "card_sha256": card_digest(body)}


def _check_card(card: dict[str, Any], card_path: Path) -> None:
    """Refuse a card that was edited after training, or whose thresholds are not numbers."""
    hint = "retrain, or restore the card"
    if "sha256" not in card:
        raise ConfigError(f"model card {card_path} has no sha256", hint)
    thresholds = card.get("thresholds", {})
    if not isinstance(thresholds, dict):
        raise ConfigError(f"model card {card_path}: thresholds is not a mapping", hint)
    for head, value in thresholds.items():
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise ConfigError(f"model card {card_path}: threshold for {head!r} is not a number "
                              "between 0 and 1", hint)
    if card.get("card_sha256") is None:
        raise ConfigError(f"model card {card_path} is not sealed (no card_sha256): it was "
                          "made by an older ticketclf or edited", hint)
    try:
        digest = card_digest(card)
    except ValueError:  # NaN / Infinity somewhere: canonical JSON refuses them
        digest = ""
    if digest != card["card_sha256"]:
        raise ConfigError(f"model card {card_path} was changed after training "
                          "(its content does not match its card_sha256)", hint)


def read_card(model_dir: Path) -> dict[str, Any]:
    card_path = model_dir / CARD_FILE
    if not card_path.is_file():
        raise ConfigError(f"no model card at {card_path}",
                          "point --model at a directory made by `ticketclf train`")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model card {card_path} is unreadable: {exc}") from exc
    if not isinstance(card, dict):
        raise ConfigError(f"model card {card_path} is not a JSON object",
                          "retrain, or restore the card")
    _check_card(card, card_path)
    return card


def load_artifacts(model_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify the file against its card, then load it with skops' allow-list."""
    model_dir = resolve_model_dir(model_dir)
    if not model_dir.exists():
        raise ConfigError(f"model not found: {model_dir}", "set --model or TICKETCLF_MODEL")
    card = read_card(model_dir)
    model_path = model_dir / card.get("model_file", MODEL_FILE)
    try:
        data = model_path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read model file {model_path}: {exc.strerror}") from exc
    if hashlib.sha256(data).hexdigest() != card["sha256"]:
        raise ConfigError(
            f"model file {model_path} does not match the SHA-256 in its card",
            "the file was changed or corrupted; restore it or retrain",
        )
    try:
        artifacts = sio.loads(data, trusted=TRUSTED_TYPES)
    except sio.exceptions.UntrustedTypesFoundException as exc:
        raise ConfigError(f"model file {model_path} contains types that are not trusted: {exc}",
                          "only models made by `ticketclf train` load") from exc
    except Exception as exc:  # noqa: BLE001 - any parse failure means a bad file
        raise ConfigError(f"model file {model_path} cannot be loaded: {exc}") from exc
    if not isinstance(artifacts, dict) or "vectorizer" not in artifacts or "heads" not in artifacts:
        raise ConfigError(f"model file {model_path} is not a ticketclf model")
    return artifacts, card


def load_model(path: Path | str) -> TicketModel:
    from .core import TicketModel
    from .static import StaticEmbedding

    artifacts, card = load_artifacts(Path(os.fspath(path)))
    if (card.get("recipe") or {}).get("encoder"):
        from .encoder import weights_dir

        weights_dir()  # refuse now, with the install hint, not at the first batch
    for _name, part in getattr(artifacts["vectorizer"], "transformer_list", []):
        if isinstance(part, StaticEmbedding):
            part.table()  # the same: and read before workers fork, so they share it
    return TicketModel(artifacts["vectorizer"], artifacts["heads"], card)
