"""Training: one shared TF-IDF vectorizer, one calibrated linear classifier per head,
out-of-fold predictions for honest metrics and per-head confidence thresholds."""

from __future__ import annotations

import logging
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
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.pipeline import FeatureUnion
from sklearn.svm import LinearSVC

from ..errors import DataError, UsageError
from ..evaluate import head_metrics, threshold_for_precision
from ..io.labelled import read_labelled
from ..io.readers import ReadOptions
from ..io.sources import STDIN
from ..priority import InvalidTaxonomy
from ..taxonomy import DEFAULT_TAXONOMY, Taxonomy
from .encoder import SentenceEncoder, encoder_card, encoder_libraries, remembering
from .language import training_languages
from .neighbours import NeighbourProduct
from .static import StaticEmbedding
from .store import file_sha256, save_model
from .tfidf import CompactTfidf

SEED = 20261126
CV_ROWS = 50_000  # cross-validation sample; see cross_validation_sample

log = logging.getLogger("ticketclf.train")


def build_vectorizer(encoder: bool = False) -> FeatureUnion:
    """Word 1–2-grams for the words a training set uses, and a static embedding distilled from
    MiniLM (static.py) for meaning across wordings it never used: on telecom tickets in other
    voices and banking77 it does what character n-grams did, at a fraction of their cost
    (bench/RESULTS.md, "Model v2"). With `encoder`, the pretrained sentence encoder itself
    (last, so its columns are the final DIMENSIONS) beside word and character n-grams: the
    recipe measured for banking77's 0.99 at 80 % coverage."""
    parts: list[tuple[str, Any]] = [
        ("word", CompactTfidf(ngram_range=(1, 2), sublinear_tf=True, strip_accents="unicode",
                              dtype=np.float32)),
    ]
    if encoder:
        parts += [("char", CompactTfidf(analyzer="char_wb", ngram_range=(2, 4),
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
    files: Sequence[Path | str]  # paths, or "-" for stdin
    label_columns: dict[str, str] = field(
        default_factory=lambda: {"category": "category", "sentiment": "sentiment"})
    read: ReadOptions = field(default_factory=ReadOptions)
    input_format: str | None = None
    any_labels: bool = False
    taxonomy: Taxonomy | None = None  # None: the built-in one (or, with any_labels, the data's)
    folds: int = 3
    target_precision: float | Mapping[str, float] = 0.9  # one for all heads, or per head
    encoder: bool = False
    # Labels with fewer examples are dropped (with a warning); None: what the folds need.
    min_examples: int | None = None
    # A column naming each row's style (channel, writer, source): cross-validation then holds
    # out whole styles, so the thresholds are chosen on text unlike what the model learned
    # from, as production text is. Unused when absent from the data.
    style_column: str = ""
    # Rows of these styles (LLM answers) are trained on but left out of the cross-validated
    # scores and thresholds: their labels' own errors would read as the model's, and raise
    # the thresholds until the model flags what it already gets right.
    unscored_styles: frozenset[str] = frozenset()

    def precision_for(self, head: str) -> float:
        if isinstance(self.target_precision, Mapping):
            return float(self.target_precision[head])
        return float(self.target_precision)


def examples_needed(spec: TrainSpec) -> int:
    """Fewest examples a label needs so that every fit sees it in each of its folds: the
    classifier's own folds (StackingClassifier's cv), inside the training part of each
    cross-validation fold when there are any."""
    inner = getattr(build_classifier(spec.encoder), "cv", None)
    inner = inner if isinstance(inner, int) else 1
    if spec.folds < 2:
        return inner
    n = max(inner, spec.folds)
    while n - -(-n // spec.folds) < inner:  # the largest held-out part is ceil(n / folds)
        n += 1
    return n


def load_training_data(spec: TrainSpec) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """A frame with a `text` column, one column per head (its labels, "" where a row has
    none) and, with `style_column`, a `style` column; and what each input contributed."""
    columns = {**spec.label_columns, **({"style": spec.style_column} if spec.style_column else {})}
    tickets = read_labelled([str(f) for f in spec.files], spec.read, columns, spec.input_format)
    data = pd.DataFrame({"text": tickets.texts, **tickets.labels})
    sources = [{"file": Path(name).name,
                "sha256": file_sha256(Path(name)) if name != STDIN else None,
                "rows": tickets.rows_by_source.get(name, 0)} for name in map(str, spec.files)]
    # A seeded shuffle: labelled exports are often sorted by label, and the stacker's internal
    # folds are taken in order, so sorted rows would give folds with different sub-topics.
    data = data.sample(frac=1.0, random_state=SEED).reset_index(drop=True)
    return data, sources


def _drop_rare_labels(data: pd.DataFrame, spec: TrainSpec, head: str,
                      column: str) -> dict[str, int]:
    """Blank the labels of `head` with fewer than min_examples rows (the rows still train the
    other heads); returns what was dropped, label -> rows."""
    minimum = spec.min_examples if spec.min_examples is not None else examples_needed(spec)
    counts = data.loc[data[column] != "", column].value_counts()
    rare = {str(label): int(n) for label, n in sorted(counts.items()) if n < minimum}
    if rare:
        data.loc[data[column].isin(list(rare)), column] = ""
        log.warning(f"{head}: dropped labels with fewer than {minimum} examples: "
                    + ", ".join(f"{label} ({n})" for label, n in rare.items()),
                    extra={"event": "labels_dropped", "head": head, "labels": rare})
    return rare


def _heads_present(data: pd.DataFrame, spec: TrainSpec) -> dict[str, str]:
    heads = {h: h for h in spec.label_columns if h in data.columns and (data[h] != "").any()}
    if not heads:
        raise DataError("no label column found in the training data",
                        "name them with --category-column / --sentiment-column")
    for head, column in heads.items():
        labels = set(data.loc[data[column] != "", column])
        unknown = [] if spec.any_labels and spec.taxonomy is None else sorted(
            labels - set((spec.taxonomy or DEFAULT_TAXONOMY).labels(head)))
        if unknown and spec.taxonomy is not None:
            raise DataError(f"{head} labels missing from the taxonomy {spec.taxonomy.source}: "
                            f"{', '.join(unknown[:10])}", "add them to the file, or relabel them")
        if unknown:
            raise DataError(f"{head} labels outside the taxonomy: {', '.join(unknown[:10])}",
                            "relabel them, pass --taxonomy FILE with your labels, or "
                            "--any-labels to train on the labels as they are")
    return heads


def _taxonomy(spec: TrainSpec, data: pd.DataFrame, heads: dict[str, str]) -> Taxonomy:
    """The model's taxonomy: the file's; the built-in one; or, for --any-labels, the labels."""
    if spec.taxonomy is not None:
        return spec.taxonomy
    if not spec.any_labels:
        return DEFAULT_TAXONOMY
    try:
        return Taxonomy.from_labels({h: set(data.loc[data[c] != "", c]) for h, c in heads.items()})
    except InvalidTaxonomy as exc:
        raise DataError(f"the training labels cannot be used: {exc}",
                        "relabel them, or pass --taxonomy FILE") from None


def _enough_labels(data: pd.DataFrame, heads: dict[str, str]) -> None:
    for head, column in heads.items():
        labels = set(data.loc[data[column] != "", column])
        if len(labels) < 2:
            raise DataError(f"{head} needs at least two labels with enough examples, found "
                            f"{sorted(labels)}", "add examples, or lower --min-examples")


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


def _scored(data: pd.DataFrame, spec: TrainSpec) -> np.ndarray:
    """Which rows' out-of-fold predictions choose the thresholds: all but unscored styles."""
    if not spec.unscored_styles or "style" not in data.columns:
        return np.ones(len(data), dtype=bool)
    return ~data["style"].isin(spec.unscored_styles).to_numpy()


def _styles(data: pd.DataFrame, spec: TrainSpec) -> np.ndarray | None:
    """Each row's style for cross-validation, or None (plain stratified folds) when the data
    has no style column or too few styles to hold out one per fold."""
    if "style" not in data.columns:
        return None
    styles = data["style"].to_numpy()
    return styles if len(set(styles)) >= spec.folds else None


@remembering()  # cross-validation and every head encode the same texts
def train(spec: TrainSpec, model_dir: Path,
          progress: Callable[[str], None] = lambda _msg: None) -> dict[str, Any]:
    """Train every head whose labels are present, save the model and return its card."""
    if spec.folds == 1 or spec.folds < 0:
        raise UsageError("--folds must be 0 (no cross-validation) or at least 2")
    if spec.any_labels and spec.taxonomy is not None:
        raise UsageError("--any-labels and --taxonomy: the file's labels are the allowed ones",
                         "drop --any-labels")
    started = time.perf_counter()
    needed = examples_needed(spec)
    if spec.min_examples is not None and spec.min_examples < needed:
        raise UsageError(f"--min-examples {spec.min_examples} is below the {needed} examples a "
                         f"label needs for {spec.folds} cross-validation folds",
                         "raise it, or pass --folds 0")
    data, sources = load_training_data(spec)
    heads = _heads_present(data, spec)
    dropped = {head: rare for head, column in heads.items()
               if (rare := _drop_rare_labels(data, spec, head, column))}
    _enough_labels(data, heads)
    taxonomy = _taxonomy(spec, data, heads)
    texts_all = data["text"].to_numpy()
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
            scored = _scored(data, spec)[mask][sample]
            pred, conf, truth = pred[scored], conf[scored], y[sample][scored]
            correct = (pred == truth).astype(float)
            thresholds[head] = threshold_for_precision(conf, correct, spec.precision_for(head))
            metrics[head] = {**head_metrics(truth, pred, conf, labels),
                             "at_threshold": kept_and_flagged(conf, correct, thresholds[head])}
        progress(f"{head}: fitting the final model")
        fitted[head] = build_classifier(spec.encoder, checks_neighbours(spec, head))
        fitted[head].fit(features[mask], y)
    card: dict[str, Any] = {
        "name": model_dir.name,
        "created": _created(),
        "labels": {head: [str(c) for c in clf.classes_] for head, clf in fitted.items()},
        "languages": training_languages(texts_all),
        "taxonomy": taxonomy.card_entry(),
        "thresholds": thresholds or {h: 0.5 for h in fitted},
        "target_precision": {h: spec.precision_for(h) for h in fitted},
        "metrics": {"folds": spec.folds,
                    "folds_hold_out": "rows" if styles is None else spec.style_column,
                    **metrics},
        "training_data": {"files": sources, "rows": int(len(data)),
                          "rows_per_head": {h: int((data[c] != "").sum())
                                            for h, c in heads.items()},
                          "dropped_labels": dropped},
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

