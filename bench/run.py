"""Throughput and memory of `ticketclf classify` against a plain one-process script, in one run.

  python bench/run.py [--rows 300000] [--rss-rows 1000000] [--small 50000] [--workers 2]
  make bench

Generates telecom-like tickets (20-60 words drawn from the hand-written corpus's vocabulary)
into a temporary directory. Two models: `word12`, a word 1-2 TF-IDF + logistic regression per
head trained here on data/telecom (so that the pipeline is measured apart from the recipe), and
the shipped model. Measures, on the same `--rows` file:
  (p) the plain script: TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True) +
      LogisticRegression, one process, predicting the texts (already in memory) in 50k slices;
  (a) the bare model: the same texts in memory through the model's predict, N processes;
  (b) `ticketclf classify` end to end, a subprocess: start, read CSV, model, priority, write;
and the peak memory of the whole classify process tree for the small and the large input,
as the sum of RSS (counts pages shared by forked workers once per process) and of PSS (each
shared page split between its sharers: what a cgroup, a pod's limit, charges). Prints Markdown;
targets are ratios, since this machine's speed varies run to run. Every run uses at most
`--workers` worker processes; inputs are streamed, so memory is bounded by one process tree.
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ticketclf.model import TicketModel, load_model  # noqa: E402

SHIPPED = ROOT / "models" / "default"
CORPUS = ROOT / "data" / "telecom"
PLAIN_SLICE = 50_000


def corpus() -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in sorted(CORPUS.glob("*.csv")):
        with open(path, newline="", encoding="utf-8") as f:
            rows += list(csv.DictReader(f))
    return rows


def vocabulary() -> list[str]:
    return [w for row in corpus() for w in re.findall(r"[A-Za-z']+|[0-9]+|[.,!?£$]", row["text"])]


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


def build_word12(model_dir: Path) -> Path:
    """The plain script's recipe as a ticketclf model (both heads), saved as `train` saves."""
    from sklearn.linear_model import LogisticRegression

    from ticketclf.model.store import save_model
    from ticketclf.model.tfidf import CompactTfidf

    rows = corpus()
    # ticketclf's own TF-IDF class: the same transform, saved as `train` saves it (its
    # vocabulary as one array, which loads in a tenth of the time).
    vec = CompactTfidf(ngram_range=(1, 2), sublinear_tf=True, dtype=np.float32)
    features = vec.fit_transform([r["text"] for r in rows])
    heads = {}
    for head in ("category", "sentiment"):
        keep = [i for i, r in enumerate(rows) if r[head]]
        heads[head] = LogisticRegression(max_iter=1000).fit(
            features[keep], [rows[i][head] for i in keep])
    vars(vec).pop("_stop_words_id", None)  # an address: not saveable (see train.py)
    save_model(model_dir, {"vectorizer": vec, "heads": heads}, {
        "name": "word12", "labels": {h: [str(c) for c in m.classes_] for h, m in heads.items()},
        "thresholds": {"category": 0.5, "sentiment": 0.5}})
    return model_dir


def read_texts(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return [row["text"] for row in csv.DictReader(f)]


def plain_rows_per_second(texts: list[str]) -> float:
    """The baseline: the simplest script anyone would write, one process, texts in memory."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    rows = corpus()
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    clf = LogisticRegression(max_iter=1000).fit(vec.fit_transform([r["text"] for r in rows]),
                                                [r["category"] for r in rows])
    start = time.perf_counter()
    for i in range(0, len(texts), PLAIN_SLICE):
        clf.predict(vec.transform(texts[i:i + PLAIN_SLICE]))
    return len(texts) / (time.perf_counter() - start)


_model: TicketModel | None = None


def _predict(texts: list[str]) -> int:
    assert _model is not None
    _model.predict(texts)
    return len(texts)


def bare_rows_per_second(model_dir: Path, texts: list[str], workers: int,
                         batch: int = 1000) -> float:
    """The model alone: texts in memory, batches spread over `workers` processes forked after
    the model is loaded (as classify's workers are)."""
    global _model
    _model = load_model(model_dir)
    chunks = [texts[i:i + batch] for i in range(0, len(texts), batch)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pool.map(_predict, chunks[:workers])  # warm up
        start = time.perf_counter()
        done = sum(pool.imap(_predict, chunks, chunksize=1))
        seconds = time.perf_counter() - start
    _model = None
    return done / seconds


def _tree(pid: int) -> list[int]:
    """A process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    return found


def _kib(path: str, field: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Run:
    rows_per_second: float
    seconds: float
    peak_rss_mib: int  # sum of the tree's RSS
    peak_pss_mib: int  # sum of the tree's PSS
    processes: int  # most processes in the tree at once


def classify_run(path: Path, workers: int, model: Path = SHIPPED) -> Run:
    """A real `ticketclf classify` process, timed from its start, memory sampled every 0.2 s."""
    out = path.with_suffix(".out.csv")
    cmd = [sys.executable, "-m", "ticketclf", "classify", str(path), "-o", str(out), "-q",
           "--workers", str(workers), "--log-level", "WARNING", "--no-llm", "--model", str(model)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    rss = pss = procs = 0
    while proc.poll() is None:
        tree = _tree(proc.pid)
        rss = max(rss, sum(_kib(f"/proc/{p}/status", "VmRSS:") for p in tree))
        pss = max(pss, sum(_kib(f"/proc/{p}/smaps_rollup", "Pss:") for p in tree))
        procs = max(procs, len(tree))
        time.sleep(0.2)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"classify failed with exit code {proc.returncode}")
    with open(out, "rb") as f:
        rows = sum(1 for _ in f) - 1
    out.unlink()
    Path(f"{out}.rejects.jsonl").unlink(missing_ok=True)
    return Run(rows / seconds, seconds, rss // 1024, pss // 1024, procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=300_000, help="rows of the speed input")
    parser.add_argument("--rss-rows", type=int, default=1_000_000, help="rows of the large input")
    parser.add_argument("--small", type=int, default=50_000, help="rows of the small input")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-shipped", action="store_true", help="measure word12 only")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, "
          f"{len(os.sched_getaffinity(0))} CPUs, Python {platform.python_version()}, "
          f"workers {args.workers}, load average {os.getloadavg()[0]:.1f} at the start")
    print(f"speed input: {args.rows:,} rows; memory: {args.small:,} and {args.rss_rows:,} rows\n",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="ticketclf-bench-") as tmp:
        speed, small, large = (Path(tmp) / f"{n}.csv" for n in ("speed", "small", "large"))
        generate(speed, args.rows, seed=3)
        generate(small, args.small)
        generate(large, args.rss_rows, seed=2)
        models = {"word12": build_word12(Path(tmp) / "word12")}
        if not args.no_shipped:
            models[f"shipped {load_model(SHIPPED).version}"] = SHIPPED
        texts = read_texts(speed)
        plain = plain_rows_per_second(texts)
        print(f"(p) plain one-process script: {plain:,.0f} rows/s\n")
        print("| model | (b) classify | (b) / (p) | (a) bare, N processes | (b) / (a) | "
              f"peak RSS / PSS, {args.small:,} | peak RSS / PSS, {args.rss_rows:,} | "
              "PSS large / small | processes |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
        for name, model in models.items():  # each row printed as soon as it is measured
            e2e = classify_run(speed, args.workers, model)
            bare = bare_rows_per_second(model, texts, args.workers)
            lo = classify_run(small, args.workers, model)
            hi = classify_run(large, args.workers, model)
            print(f"| {name} | {e2e.rows_per_second:,.0f} rows/s ({e2e.seconds:.1f} s) | "
                  f"**{e2e.rows_per_second / plain:.2f}** | {bare:,.0f} rows/s | "
                  f"{e2e.rows_per_second / bare:.2f} | {lo.peak_rss_mib} / {lo.peak_pss_mib} MiB "
                  f"| {hi.peak_rss_mib} / {hi.peak_pss_mib} MiB | "
                  f"{hi.peak_pss_mib / lo.peak_pss_mib:.2f} | {hi.processes} |", flush=True)
        plain_again = plain_rows_per_second(texts)  # the machine drifts: bracket the run
    print(f"\n(p) again at the end: {plain_again:,.0f} rows/s; load average "
          f"{os.getloadavg()[0]:.1f}")

if __name__ == "__main__":
    main()
