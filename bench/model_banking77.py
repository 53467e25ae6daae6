"""The candidate recipes of model_candidates.py on banking77 (bench/RESULTS.md, "Model v2").

    OMP_NUM_THREADS=1 .venv/bin/python bench/model_banking77.py --shared-data ../shared/data \
        [--only name,name]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from model_candidates import CANDIDATES, ROOT  # noqa: E402

from ticketclf.evaluate import risk_coverage  # noqa: E402


def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return (np.array([r["text"] for r in rows], dtype=object),
            np.array([r["category"] for r in rows], dtype=object))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared-data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    x, y = read(args.shared_data / "banking77" / "train.csv")
    tx, ty = read(args.shared_data / "banking77" / "test.csv")
    wanted = [n for n in args.only.split(",") if n]
    print("| recipe | accuracy | accuracy at 80 % coverage | fit s |\n|---|---:|---:|---:|")
    for name, (make_vec, make_clf) in CANDIDATES.items():
        if wanted and not any(w in name for w in wanted):
            continue
        started = time.perf_counter()
        vec = make_vec().fit(x)
        clf = make_clf().fit(vec.transform(x), y)
        seconds = time.perf_counter() - started
        proba = clf.predict_proba(vec.transform(tx))
        correct = (clf.classes_[proba.argmax(axis=1)] == ty).astype(float)
        at80 = next(r["accuracy"] for r in risk_coverage(proba.max(axis=1), correct)
                    if r["coverage"] == 0.8)
        print(f"| {name} | {correct.mean():.4f} | {at80:.4f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
