"""What the drift counts (ticketclf/drift.py) cost next to the model, per batch, one process.

  OMP_NUM_THREADS=1 python bench/drift_cost.py [--rows 5000] [--repeats 5]

Texts: the hand-written telecom corpus, repeated to --rows. Each measure is the best of
--repeats over the same texts, so a busy machine slows all of them alike; the figure that
matters is the ratio to the model's vectorise + predict.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ticketclf.drift import WordVocabulary, count_batch  # noqa: E402
from ticketclf.model import load_model  # noqa: E402
from ticketclf.pipeline import Thresholds  # noqa: E402


def best(seconds: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        seconds()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    texts: list[str] = []
    for path in sorted((ROOT / "data" / "telecom").glob("*.csv")):
        with open(path, newline="", encoding="utf-8") as f:
            texts += [row["text"] for row in csv.DictReader(f)]
    texts = (texts * (args.rows // len(texts) + 1))[:args.rows]
    model = load_model(ROOT / "models" / "default")
    vocabulary = WordVocabulary.of(model.vectorizer)
    thresholds = Thresholds.from_model(model).by_head
    predictions = model.predict(texts)
    predict = best(lambda: model.predict(texts), args.repeats)
    sampled = best(lambda: count_batch(vocabulary, thresholds, texts, predictions), args.repeats)
    every = best(lambda: vocabulary.count(texts) if vocabulary else None, args.repeats)
    print(f"{len(texts):,} tickets, best of {args.repeats}\n")
    print("| measure | seconds | vs vectorise + predict |")
    print("|---|---:|---:|")
    print(f"| vectorise + predict (shipped model) | {predict:.3f} | 1 |")
    print(f"| drift counts as classify takes them (tokens of every 4th ticket) | {sampled:.3f} "
          f"| {sampled / predict:.1%} |")
    print(f"| unseen tokens of every ticket (what compare counts) | {every:.3f} "
          f"| {every / predict:.1%} |")


if __name__ == "__main__":
    main()
