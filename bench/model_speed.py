"""Transform + predict speed of candidate recipes on one core, as ratios inside one run.

The machine is shared, so each recipe is timed in alternating rounds over the same 20,000
hand-written tickets (texts in memory, 5,000-row slices, both heads) and the median round is
reported beside its ratio to word 1–2 TF-IDF + logistic regression, the issue's yardstick.

    OMP_NUM_THREADS=1 .venv/bin/python bench/model_speed.py --shared-data ../shared/data
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from model_candidates import CANDIDATES, ROOT, build_default, speed_texts  # noqa: E402

RECIPES = ["word, LR", "shipped: word+char, stacked SVM", "word+static, stacked SVM",
           "word+static, LR", "static, LR"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared-data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    mapping = json.loads((ROOT / "data" / "public_mapping.json").read_text())
    hand_train, holdout = build_default.handwritten(ROOT / "data" / "telecom")
    rows = hand_train + build_default.banking77(args.shared_data, mapping["banking77"])
    texts = np.array([r["text"] for r in rows], dtype=object)
    fitted = {}
    for name in RECIPES:
        make_vec, make_clf = CANDIDATES[name]
        vec = make_vec().fit(texts)
        features = vec.transform(texts)
        heads = []
        for head in ("category", "sentiment"):
            y = np.array([r[head] for r in rows], dtype=object)
            heads.append(make_clf().fit(features[y != ""], y[y != ""]))
        fitted[name] = (vec, heads)
    speed = speed_texts(hand_train + holdout)
    seconds: dict[str, list[float]] = {name: [] for name in RECIPES}
    for _round in range(args.rounds):
        for name, (vec, heads) in fitted.items():
            started = time.perf_counter()
            for start in range(0, len(speed), 5000):
                features = vec.transform(speed[start:start + 5000])
                for clf in heads:
                    clf.predict_proba(features)
            seconds[name].append(time.perf_counter() - started)
    base = len(speed) / statistics.median(seconds[RECIPES[0]])
    print("| recipe | rows/s (median of rounds) | ratio to word, LR |\n|---|---:|---:|")
    for name in RECIPES:
        rate = len(speed) / statistics.median(seconds[name])
        print(f"| {name} | {rate:,.0f} | {rate / base:.2f} |")


if __name__ == "__main__":
    main()
