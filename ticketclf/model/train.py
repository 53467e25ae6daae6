"""Training: one shared TF-IDF vectorizer, one calibrated linear classifier per head,
out-of-fold predictions for honest metrics and per-head confidence thresholds."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy
import sklearn
import skops
from sklearn.ensemble import StackingClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.pipeline import FeatureUnion
from sklearn.svm import LinearSVC

from ..errors import DataError, InputNotFound, UsageError
from ..evaluate import head_metrics, threshold_for_precision
from ..io.sources import format_from_name
from ..schema import LABELS
from .encoder import SentenceEncoder, encoder_card, encoder_libraries, remembering
from .neighbours import NeighbourProduct
from .static import StaticEmbedding
from .store import file_sha256, save_model

SEED = 20261126
CV_ROWS = 50_000  # cross-validation sample; see cross_validation_sample


def build_vectorizer(encoder: bool = False) -> FeatureUnion:
    """Word 1–2-grams for the words a training set uses, and a static embedding distilled from
    MiniLM (static.py) for meaning across wordings it never used: on telecom tickets in other
    voices and banking77 it does what character n-grams did, at a fraction of their cost
    (bench/RESULTS.md, "Model v2"). With `encoder`, the pretrained sentence encoder itself
    (last, so its columns are the final DIMENSIONS) beside word and character n-grams: the
    recipe measured for banking77's 0.99 at 80 % coverage."""
    parts: list[tuple[str, Any]] = [
        ("word", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, strip_accents="unicode",
                                 dtype=np.float32)),
    ]
    if encoder:
        parts += [("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4),
                                           sublinear_tf=True, min_df=2, dtype=np.float32)),
                  ("sentence", SentenceEncoder())]
    else:
        parts.append(("static", StaticEmbedding()))
    return FeatureUnion(parts)


def build_classifier(encoder: bool = False,
                     check_neighbours: bool = False) -> StackingClassifier | NeighbourProduct:
    """A class-balanced linear SVM whose per-class scores, taken out of fold, feed a
    multinomial logistic regression that turns them into calibrated probabilities; with
    `check_neighbours`, checked against the nearest training tickets (neighbours.py).

    Measured on banking77 (README): 0.928 accuracy and ECE 0.02, against 0.916 for the same
    SVM calibrated by temperature scaling, and better than isotonic, sigmoid, plain logistic
    regression or soft voting; the stacker also learns which classes the SVM confuses. The
    encoder's dense columns make each SVM fit ~3x slower, so that recipe takes 3 folds, not 5
    (same banking77 accuracy at 80 % coverage, 0.991, in 27 s instead of 49 s). Not fitted
    in parallel: worker processes change the last digits and with them the model's bytes.
    """
    stack = StackingClassifier(
        [("svc", LinearSVC(C=0.5, class_weight="balanced", random_state=SEED))],
        final_estimator=LogisticRegression(C=1.0, max_iter=1000),
        cv=3 if encoder else 5,
    )
    return NeighbourProduct(stack) if check_neighbours else stack


def checks_neighbours(spec: TrainSpec, head: str) -> bool:
    """Only the category head: sentence embeddings place tickets by topic, not by tone, so the
    nearest tickets' sentiment is a poor second opinion (telecom held-out sentiment macro-F1
    0.83 -> 0.79 with the check, ECE 0.04 -> 0.11)."""
    return spec.encoder and head == "category"


@dataclass(frozen=True)
class TrainSpec:
    files: Sequence[Path]
    text_column: str = "text"
    label_columns: dict[str, str] = field(
        default_factory=lambda: {"category": "category", "sentiment": "sentiment"})
    any_labels: bool = False
    folds: int = 3
    target_precision: float | Mapping[str, float] = 0.9  # one for all heads, or per head
    encoder: bool = False
    # A column naming each row's style (channel, writer, source): cross-validation then holds
    # out whole styles, so the thresholds are chosen on text unlike what the model learned
    # from, as production text is. Unused when absent from the data.
    style_column: str = ""

    def precision_for(self, head: str) -> float:
        if isinstance(self.target_precision, Mapping):
            return float(self.target_precision[head])
        return float(self.target_precision)


def read_table(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    if not path.exists():
        raise InputNotFound(f"training file not found: {path}")
    fmt = format_from_name(str(path))
    try:
        if fmt == "jsonl":
            df = pd.read_json(path, lines=True, dtype=False)
        else:
            df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read training file {path}: {exc}") from exc
    present = [c for c in columns if c in df.columns]
    return df[present].astype(str).replace({"nan": "", "None": ""})


def load_training_data(spec: TrainSpec) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    wanted = [spec.text_column, *spec.label_columns.values(), *filter(None, [spec.style_column])]
    frames, sources = [], []
    for path in spec.files:
        df = read_table(Path(path), wanted)
        if spec.text_column not in df.columns:
            raise DataError(f"{path}: no text column {spec.text_column!r}",
                            "pass the right one with --text-column")
        frames.append(df)
        sources.append({"file": Path(path).name, "sha256": file_sha256(Path(path)),
                        "rows": int(len(df))})
    data = pd.concat(frames, ignore_index=True).fillna("")
    data = data[data[spec.text_column].str.strip() != ""]
    # A seeded shuffle: labelled exports are often sorted by label, and the stacker's internal
    # folds are taken in order, so sorted rows would give folds with different sub-topics.
    data = data.sample(frac=1.0, random_state=SEED).reset_index(drop=True)
    return data, sources


def _heads_present(data: pd.DataFrame, spec: TrainSpec) -> dict[str, str]:
    heads = {h: c for h, c in spec.label_columns.items()
             if c in data.columns and (data[c] != "").any()}
    if not heads:
        raise DataError("no label column found in the training data",
                        "name them with --category-column / --sentiment-column")
    for head, column in heads.items():
        labels = set(data.loc[data[column] != "", column])
        unknown = sorted(labels - set(LABELS.get(head, ())))
        if unknown and not spec.any_labels:
            raise DataError(f"{head} labels outside the taxonomy: {', '.join(unknown[:10])}",
                            "relabel them, or pass --any-labels to train on your own labels")
        if len(labels) < 2:
            raise DataError(f"{head} needs at least two labels, found {sorted(labels)}")
    return heads


def _out_of_fold(texts: np.ndarray, y: np.ndarray, styles: np.ndarray | None, spec: TrainSpec,
                 head: str, progress: Callable[[str], None]) -> tuple[np.ndarray, np.ndarray]:
    """Predicted labels and confidences for every row from a model that did not see it (nor,
    with `styles`, any row of its style)."""
    pred = np.empty(len(y), dtype=object)
    conf = np.zeros(len(y))
    for k, (train_idx, test_idx) in enumerate(fold_splits(y, styles, spec.folds), start=1):
        progress(f"{head}: fold {k}/{spec.folds}")
        vec = build_vectorizer(spec.encoder)
        clf = build_classifier(spec.encoder, checks_neighbours(spec, head))
        clf.fit(vec.fit_transform(texts[train_idx]), y[train_idx])
        proba = clf.predict_proba(vec.transform(texts[test_idx]))
        pred[test_idx] = clf.classes_[proba.argmax(axis=1)]
        conf[test_idx] = proba.max(axis=1)
    return pred, conf


def fold_splits(y: np.ndarray, styles: np.ndarray | None,
                folds: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds; with `styles`, each style's rows all in one fold."""
    if styles is None:
        return StratifiedKFold(n_splits=folds, shuffle=True, random_state=SEED).split(y, y)
    return StratifiedGroupKFold(n_splits=folds, shuffle=True,
                                random_state=SEED).split(y, y, styles)


def cross_validation_sample(y: np.ndarray, limit: int = CV_ROWS) -> np.ndarray:
    """Row indices for cross-validation: all rows, or a seeded sample of `limit` with every
    label kept. Metrics and thresholds are estimates that 50k rows already pin to the second
    decimal; refitting every fold on millions of rows would only cost time."""
    if len(y) <= limit:
        return np.arange(len(y))
    rng = np.random.default_rng(SEED)
    chosen = rng.choice(len(y), size=limit, replace=False)
    first_of_each = np.unique(y, return_index=True)[1]
    return np.union1d(chosen, first_of_each)


def kept_and_flagged(confidence: np.ndarray, correct: np.ndarray,
                     threshold: float) -> dict[str, float]:
    """The card's headline: how right the tickets a threshold keeps are, and how many it
    flags for review (or escalation)."""
    kept = confidence >= threshold
    return {"threshold": float(threshold), "flagged": float(1 - kept.mean()),
            "kept_accuracy": float(correct[kept].mean()) if kept.any() else 1.0}


def _styles(data: pd.DataFrame, spec: TrainSpec) -> np.ndarray | None:
    """Each row's style for cross-validation, or None (plain stratified folds) when the data
    has no style column or too few styles to hold out one per fold."""
    if not spec.style_column or spec.style_column not in data.columns:
        return None
    styles = data[spec.style_column].to_numpy()
    return styles if len(set(styles)) >= spec.folds else None


@remembering()  # cross-validation and every head encode the same texts
def train(spec: TrainSpec, model_dir: Path,
          progress: Callable[[str], None] = lambda _msg: None) -> dict[str, Any]:
    """Train every head whose labels are present, save the model and return its card."""
    if spec.folds == 1 or spec.folds < 0:
        raise UsageError("--folds must be 0 (no cross-validation) or at least 2")
    started = time.perf_counter()
    data, sources = load_training_data(spec)
    heads = _heads_present(data, spec)
    texts_all = data[spec.text_column].to_numpy()
    progress("encoding sentences" if spec.encoder else "fitting the vectorizer")
    vectorizer = build_vectorizer(spec.encoder).fit(texts_all)
    features = vectorizer.transform(texts_all)
    styles = _styles(data, spec)
    fitted: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    thresholds: dict[str, float] = {}
    for head, column in heads.items():
        mask = (data[column] != "").to_numpy()
        y = data.loc[mask, column].to_numpy()
        labels = sorted(set(y))
        if spec.folds >= 2:
            progress(f"{head}: cross-validating")
            sample = cross_validation_sample(y)
            pred, conf = _out_of_fold(texts_all[mask][sample], y[sample],
                                      None if styles is None else styles[mask][sample], spec,
                                      head, progress)
            correct = (pred == y[sample]).astype(float)
            thresholds[head] = threshold_for_precision(conf, correct, spec.precision_for(head))
            metrics[head] = {**head_metrics(y[sample], pred, conf, labels),
                             "at_threshold": kept_and_flagged(conf, correct, thresholds[head])}
        progress(f"{head}: fitting the final model")
        fitted[head] = build_classifier(spec.encoder, checks_neighbours(spec, head))
        fitted[head].fit(features[mask], y)
    card: dict[str, Any] = {
        "name": model_dir.name,
        "created": _created(),
        "labels": {head: [str(c) for c in clf.classes_] for head, clf in fitted.items()},
        "thresholds": thresholds or {h: 0.5 for h in fitted},
        "target_precision": {h: spec.precision_for(h) for h in fitted},
        "metrics": {"folds": spec.folds,
                    "folds_hold_out": "rows" if styles is None else spec.style_column,
                    **metrics},
        "training_data": {"files": sources, "rows": int(len(data)),
                          "rows_per_head": {h: int((data[c] != "").sum())
                                            for h, c in heads.items()}},
        "recipe": {"vectorizer": repr(build_vectorizer(spec.encoder)),
                   "classifier": repr(build_classifier(spec.encoder)), "seed": SEED,
                   **({"encoder": {**encoder_card(), "neighbour_check": [
                       h for h in fitted if checks_neighbours(spec, h)]}} if spec.encoder else {})},
        "libraries": {"python": platform.python_version(), "scikit-learn": sklearn.__version__,
                      "numpy": np.__version__, "scipy": scipy.__version__,
                      "skops": skops.__version__, **(encoder_libraries() if spec.encoder else {})},
    }
    _forget_object_ids(vectorizer)
    card = save_model(model_dir, {"vectorizer": vectorizer, "heads": fitted}, card)
    card["train_seconds"] = round(time.perf_counter() - started, 1)  # reported, not saved
    return card


def _forget_object_ids(vectorizer: FeatureUnion) -> None:
    """TF-IDF vectorizers remember `id(stop_words)` to skip re-checking them; an address means
    nothing in another process and made equal training runs save different bytes."""
    for _name, part in vectorizer.transformer_list:
        vars(part).pop("_stop_words_id", None)


def _created() -> str:
    """SOURCE_DATE_EPOCH when set, so that rebuilding from the same data gives the same card."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    return moment.replace(microsecond=0).isoformat()

