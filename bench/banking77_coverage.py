"""Can a better ranking signal lift banking77 accuracy at 80 % coverage to the 0.99 target?

Compares, on banking77 test.csv, the confidence of the shipped recipe with two re-rankings
that need more training but no new dependency:

- fold average: the mean of the five recipe models fitted on 4/5 of train.csv each;
- correctness model: a gradient-boosted classifier that predicts "the recipe is right" from
  the recipe's probabilities (top-1, top-2, margin, entropy), the out-of-fold precision of the
  predicted class and the confusability of the top-two pair, whether word-only and char-only
  SVMs agree, and the similarity to the nearest training example of the predicted class.
  It is fitted on out-of-fold predictions for train.csv, never on test.csv.

Prints a Markdown table; about 4 minutes on 2 cores.

    .venv/bin/python bench/banking77_coverage.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import normalize
from sklearn.svm import LinearSVC

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ticketclf.evaluate import expected_calibration_error, risk_coverage  # noqa: E402
from ticketclf.model.train import (  # noqa: E402
    SEED,
    TrainSpec,
    build_classifier,
    build_vectorizer,
    load_training_data,
)

DATA = ROOT.parent / "shared" / "data" / "banking77"
FOLDS = 5


def load() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """train.csv read and shuffled exactly as `ticketclf train` reads it; test.csv as is."""
    spec = TrainSpec(files=[DATA / "train.csv"], label_columns={"category": "category"},
                     any_labels=True)
    train, _sources = load_training_data(spec)
    test = pd.read_csv(DATA / "test.csv")
    return (train.text.to_numpy(), train.category.to_numpy(),
            test.text.to_numpy(), test.category.to_numpy())


def nearest_by_class(reference, labels: np.ndarray, queries, n_classes: int) -> np.ndarray:
    """Cosine similarity of each query to its nearest reference row of every class."""
    sims = (queries @ reference.T).toarray()
    return np.column_stack([sims[:, labels == c].max(axis=1) for c in range(n_classes)])


def view_models(train_x, train_y: np.ndarray, query_x, n_words: int) -> list[np.ndarray]:
    """Scores of models that see the input differently: words only, characters only, nearest
    example. Their agreement with the recipe is a signal the recipe's own probability lacks."""
    out = []
    for cols in (slice(0, n_words), slice(n_words, None)):
        svm = LinearSVC(C=0.5, class_weight="balanced", random_state=SEED)
        out.append(svm.fit(normalize(train_x[:, cols]), train_y)
                   .decision_function(normalize(query_x[:, cols])))
    out.append(nearest_by_class(train_x, train_y, query_x, int(train_y.max()) + 1))
    return out


def correctness_features(proba: np.ndarray, views: list[np.ndarray], class_precision: np.ndarray,
                         pair_confusion: np.ndarray) -> np.ndarray:
    ranked = np.argsort(proba, axis=1)
    top, second = ranked[:, -1], ranked[:, -2]
    rows = np.arange(len(proba))
    p1, p2 = proba[rows, top], proba[rows, second]
    entropy = -(proba * np.log(proba + 1e-12)).sum(axis=1)
    nearest = views[-1]
    columns = [p1, p2, p1 - p2, entropy, class_precision[top], pair_confusion[top, second],
               *[(v.argmax(axis=1) == top).astype(float) for v in views],
               nearest.max(axis=1), nearest[rows, top]]
    return np.column_stack(columns)


def summary(name: str, confidence: np.ndarray, correct: np.ndarray) -> str:
    cov = {row["coverage"]: row["accuracy"] for row in risk_coverage(confidence, correct)}
    return (f"| {name} | {correct.mean():.4f} | {cov[0.7]:.4f} | {cov[0.8]:.4f} | "
            f"{cov[0.9]:.4f} | {expected_calibration_error(confidence, correct):.3f} |")


def main() -> None:
    train_text, train_label, test_text, test_label = load()
    classes = np.array(sorted(set(train_label)))
    y = np.searchsorted(classes, train_label)
    y_test = np.searchsorted(classes, test_label)
    vectorizer = build_vectorizer()
    x = vectorizer.fit_transform(train_text).tocsr()
    x_test = vectorizer.transform(test_text).tocsr()
    n_words = len(vectorizer.transformer_list[0][1].vocabulary_)

    oof_proba = np.zeros((len(y), len(classes)))
    oof_views = [np.zeros((len(y), len(classes))) for _ in range(3)]
    fold_test_proba = []
    for fit_idx, held_idx in StratifiedKFold(FOLDS).split(x, y):
        model = build_classifier().fit(x[fit_idx], y[fit_idx])
        oof_proba[held_idx] = model.predict_proba(x[held_idx])
        fold_test_proba.append(model.predict_proba(x_test))
        held_views = view_models(x[fit_idx], y[fit_idx], x[held_idx], n_words)
        for store, scores in zip(oof_views, held_views, strict=True):
            store[held_idx] = scores
    full = build_classifier().fit(x, y)
    test_proba = full.predict_proba(x_test)

    oof_pred = oof_proba.argmax(axis=1)
    confusion = np.zeros((len(classes), len(classes)))
    np.add.at(confusion, (y, oof_pred), 1)
    class_precision = np.diag(confusion) / np.maximum(confusion.sum(axis=0), 1)
    pair_confusion = confusion + confusion.T
    np.fill_diagonal(pair_confusion, 0)
    pair_confusion /= confusion.sum(axis=1)[:, None] + confusion.sum(axis=0)[None, :] + 1

    judge = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_leaf_nodes=15,
                                           random_state=SEED)
    judge.fit(correctness_features(oof_proba, oof_views, class_precision, pair_confusion),
              (oof_pred == y).astype(int))
    test_views = view_models(x, y, x_test, n_words)
    judged = judge.predict_proba(correctness_features(test_proba, test_views, class_precision,
                                                      pair_confusion))[:, 1]

    correct = (test_proba.argmax(axis=1) == y_test).astype(float)
    fold_mean = np.mean(fold_test_proba, axis=0)
    fold_correct = (fold_mean.argmax(axis=1) == y_test).astype(float)
    print("| confidence | accuracy | acc @ 70 % | acc @ 80 % | acc @ 90 % | ECE |")
    print("|---|---:|---:|---:|---:|---:|")
    print(summary("recipe (shipped)", test_proba.max(axis=1), correct))
    print(summary(f"mean of {FOLDS} fold models", fold_mean.max(axis=1), fold_correct))
    print(summary("correctness model over the recipe", judged, correct))


if __name__ == "__main__":
    main()
