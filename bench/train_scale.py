"""`ticketclf train` on many labelled rows: wall time and peak RSS (bench/RESULTS.md).

  python bench/train_scale.py --rows 100000 [--rows 1000000] [--keep build/train_scale]

Generates labelled tickets: each row takes the category and sentiment of a random ticket of
the hand-written corpus and 20-60 words drawn from the words of tickets with that category
(so the labels are learnable and the vocabulary grows with the input, as years of history
would). Then runs the real CLI in a subprocess, its progress on this terminal, and reads the
peak RSS of that process from wait4 (training runs in one process).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def corpus() -> tuple[list[tuple[str, str]], dict[str, np.ndarray]]:
    labels: list[tuple[str, str]] = []
    words: dict[str, list[str]] = defaultdict(list)
    for path in sorted((ROOT / "data" / "telecom").glob("*.csv")):
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                labels.append((row["category"], row["sentiment"]))
                words[row["category"]] += re.findall(r"[A-Za-z']+|[0-9]+|[.,!?£$]", row["text"])
    return labels, {c: np.array(w) for c, w in words.items()}


def generate(path: Path, rows: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    labels, words = corpus()
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["text", "category", "sentiment"])
        for i in rng.integers(0, len(labels), size=rows):
            category, sentiment = labels[i]
            vocab = words[category]
            picks = vocab[rng.integers(0, len(vocab), size=int(rng.integers(20, 61)))]
            writer.writerow([" ".join(picks), category, sentiment])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, action="append", required=True)
    parser.add_argument("--keep", type=Path, help="write the data and models here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        print("| rows | CSV MB | wall s | CPU s | peak RSS MiB |\n|---:|---:|---:|---:|---:|")
        for rows in args.rows:
            data = work / f"train_{rows}.csv"
            if not data.exists():
                generate(data, rows)
            started = time.perf_counter()
            proc = subprocess.Popen([str(Path(sys.executable).with_name("ticketclf")), "train",
                                     str(data), "-o", str(work / f"model_{rows}")],
                                    stdout=sys.stderr)
            _pid, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - started
            if status != 0:
                sys.exit(f"train failed on {rows} rows (status {status})")
            # ru_maxrss of the waited-for child, in KiB on Linux.
            # CPU seconds as well: on a shared machine the wall time depends on the neighbours.
            print(f"| {rows:,} | {data.stat().st_size / 1e6:.0f} | {seconds:.0f} | "
                  f"{usage.ru_utime + usage.ru_stime:.0f} | {usage.ru_maxrss / 1024:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
