"""How many nearest training tickets should check the encoder recipe's predictions?

The `--encoder` recipe multiplies the stacker's probabilities by (smoothing + the label shares of
the k nearest training tickets in sentence-embedding space). k is chosen here on out-of-fold
predictions for banking77 train.csv; the test.csv columns are shown beside them but were not
used to choose. Prints a Markdown table; about 3 minutes on 2 cores.

    .venv/bin/python bench/banking77_neighbours.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from banking77_coverage import load  # noqa: E402

from ticketclf.evaluate import expected_calibration_error, risk_coverage  # noqa: E402
from ticketclf.model.train import build_classifier, build_vectorizer  # noqa: E402

NEIGHBOURS = (3, 5, 10, 20)
FOLDS = 5


def scores(proba: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Accuracy at 80 % coverage, accuracy, ECE."""
    confidence, correct = proba.max(axis=1), (proba.argmax(axis=1) == y).astype(float)
    at80 = {row["coverage"]: row["accuracy"] for row in risk_coverage(confidence, correct)}[0.8]
    return at80, correct.mean(), expected_calibration_error(confidence, correct)


def predictions(model, features) -> dict[str, np.ndarray]:
    """The stacker alone, then checked by k neighbours for each k (refitting nothing)."""
    out = {"no neighbour check": model.classifier_.predict_proba(features)}
    for k in NEIGHBOURS:
        model.set_params(neighbours=k)
        out[f"k = {k}"] = model.predict_proba(features)
    return out


def main() -> None:
    train_text, train_label, test_text, test_label = load()
    classes = np.array(sorted(set(train_label)))
    y, y_test = np.searchsorted(classes, train_label), np.searchsorted(classes, test_label)
    vectorizer = build_vectorizer(encoder=True)
    x = vectorizer.fit_transform(train_text).tocsr()
    x_test = vectorizer.transform(test_text).tocsr()

    oof: dict[str, np.ndarray] = {}
    for fit_idx, held_idx in StratifiedKFold(FOLDS).split(x, y):
        model = build_classifier(encoder=True, check_neighbours=True).fit(x[fit_idx], y[fit_idx])
        for name, proba in predictions(model, x[held_idx]).items():
            oof.setdefault(name, np.zeros((len(y), len(classes))))[held_idx] = proba
    test = predictions(build_classifier(encoder=True, check_neighbours=True).fit(x, y), x_test)

    print("| confidence | train OOF: acc @ 80 % | accuracy | ECE "
          "| test: acc @ 80 % | accuracy | ECE |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in oof:
        cells = [*scores(oof[name], y), *scores(test[name], y_test)]
        print(f"| {name} | " + " | ".join(
            f"{v:.5f}" if i % 3 == 0 else f"{v:.4f}" if i % 3 == 1 else f"{v:.3f}"
            for i, v in enumerate(cells)) + " |")


if __name__ == "__main__":
    main()
