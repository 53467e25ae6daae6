"""Throughput and memory of `ticketclf classify` against the bare model, in one run.

  python bench/run.py [--rows 1000000] [--small 50000] [--workers N]

Generates telecom-like tickets (20-60 words drawn from the hand-written corpus's vocabulary)
into a temporary directory, then measures:
  (a) bare vectorise + predict of the shipped model over the same texts, N processes;
  (b) `ticketclf classify` end to end (subprocess: read CSV, model, priority, write CSV);
  peak RSS of the whole classify process tree for the small and the large input.
Prints a Markdown table; targets are ratios, since this machine's speed varies run to run.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ticketclf.model import load_model  # noqa: E402

MODEL = ROOT / "models" / "default"


def vocabulary() -> list[str]:
    words: list[str] = []
    for path in sorted((ROOT / "data" / "telecom").glob("*.csv")):
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                words += re.findall(r"[A-Za-z']+|[0-9]+|[.,!?£$]", row["text"])
    return words


def generate(path: Path, rows: int, seed: int = 1, words: tuple[int, int] = (20, 60)) -> None:
    """Tickets of 20-60 tokens (or `words`); word frequencies follow the corpus."""
    rng = np.random.default_rng(seed)
    vocab = np.array(vocabulary())
    lengths = rng.integers(words[0], words[1] + 1, size=rows)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["ticket_id", "channel", "text"])
        chunk = min(10_000, max(1, 2_000_000 // words[1]))  # bounded memory for long texts
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            picks = vocab[rng.integers(0, len(vocab), size=int(lengths[start:start + n].sum()))]
            offsets = np.cumsum(lengths[start:start + n])[:-1]
            for i, toks in enumerate(np.split(picks, offsets)):
                writer.writerow([f"B{start + i}", "email", " ".join(toks)])


_model = None


def _init() -> None:
    global _model
    _model = load_model(MODEL)


def _predict(texts: list[str]) -> int:
    assert _model is not None
    _model.predict(texts)
    return len(texts)


def bare_rows_per_second(path: Path, workers: int, batch: int = 1000) -> float:
    """The model alone: texts already in memory, batches spread over `workers` processes."""
    with open(path, newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    chunks = [texts[i:i + batch] for i in range(0, len(texts), batch)]
    ctx = multiprocessing.get_context("forkserver")
    with ctx.Pool(workers, initializer=_init) as pool:
        pool.map(_predict, chunks[:workers])  # warm up: model loaded in every worker
        start = time.perf_counter()
        done = sum(pool.imap(_predict, chunks, chunksize=1))
        seconds = time.perf_counter() - start
    return done / seconds


def _tree_rss_kib(pid: int) -> int:
    """Resident memory of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def classify_run(path: Path, workers: int) -> tuple[float, float, int]:
    """(rows/s, seconds, peak tree RSS in MiB) of a real `ticketclf classify` process."""
    out = path.with_suffix(".out.csv")
    cmd = [sys.executable, "-m", "ticketclf", "classify", str(path), "-o", str(out), "-q",
           "--workers", str(workers), "--log-level", "WARNING"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss_kib(proc.pid))
        time.sleep(0.2)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"classify failed with exit code {proc.returncode}")
    with open(out, "rb") as f:
        rows = sum(1 for _ in f) - 1
    out.unlink()
    return rows / seconds, seconds, peak // 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ticketclf-bench-") as tmp:
        small, large = Path(tmp) / "small.csv", Path(tmp) / "large.csv"
        generate(small, args.small)
        generate(large, args.rows)
        bare = bare_rows_per_second(large, args.workers)
        e2e, e2e_s, rss_large = classify_run(large, args.workers)
        _, _, rss_small = classify_run(small, args.workers)
        size_mb = large.stat().st_size / 1e6
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, workers {args.workers}")
    print(f"input: {args.rows:,} rows ({size_mb:.0f} MB) and {args.small:,} rows\n")
    print("| measure | value | target |")
    print("|---|---|---|")
    print(f"| (a) bare vectorise + predict | {bare:,.0f} rows/s | |")
    print(f"| (b) classify end to end | {e2e:,.0f} rows/s ({e2e_s:.0f} s) | |")
    print(f"| (b) / (a) | {e2e / bare:.2f} | >= 0.80 |")
    print(f"| peak RSS, {args.small:,} rows | {rss_small} MiB | |")
    print(f"| peak RSS, {args.rows:,} rows | {rss_large} MiB | |")
    print(f"| RSS ratio large / small | {rss_large / rss_small:.2f} | <= 1.20 |")


if __name__ == "__main__":
    main()
