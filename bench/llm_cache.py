"""Benchmark: a warm rerun with LLM escalation on costs (almost) nothing.

Classifies the same tickets three ways, in one process, with the shipped model:
  cold   escalation on, empty cache, the fake Gemini server answering after 200 ms
  warm   the same again: every uncertain ticket is answered from the cache
  local  escalation off
and reports requests made and wall time, warm and local alternating over several rounds
(median), with the ratio local/warm as the speed of the warm run relative to local-only.
The target (issue 4): the warm run makes zero requests and its speed is >= 0.9x local-only.

    .venv/bin/python bench/llm_cache.py [--rows 10000] [--rounds 5] [--markdown]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fake_gemini import API_KEY, FakeGemini, Reply, answer_body  # noqa: E402
from ticketclf.llm import EscalationSettings, LLMConfig, open_escalator  # noqa: E402
from ticketclf.model import load_model  # noqa: E402
from ticketclf.runner import ClassifyJob, RunReport, run_classify  # noqa: E402

DELAY_SECONDS = 0.2
COLD_CONCURRENCY = 32  # only to fill the cache faster; the warm run sends nothing


def make_input(path: Path, rows: int) -> None:
    """Distinct tickets: the corpus texts, numbered so that no two are the same."""
    texts = []
    for source in sorted((ROOT / "data" / "telecom").glob("*.csv")):
        with open(source, encoding="utf-8", newline="") as f:
            texts += [row["text"] for row in csv.DictReader(f)]
    with open(path, "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["ticket_id", "text"])
        for i in range(rows):
            out.writerow([f"B-{i}", f"{texts[i % len(texts)]} ({i})"])


def run(src: Path, out: Path, config: LLMConfig | None, workers: int,
        threshold: float | None) -> tuple[float, RunReport]:
    model_dir = ROOT / "models" / "default"
    model = load_model(model_dir)
    report = RunReport()
    job = ClassifyJob(inputs=[str(src)], output=str(out), workers=workers, threshold=threshold)
    started = time.perf_counter()
    if config is None:
        run_classify(job, model, model_dir, report=report)
    else:
        with open_escalator(config, report.llm) as escalator:
            run_classify(job, model, model_dir, escalator=escalator, report=report)
    return time.perf_counter() - started, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threshold", type=float, default=None,
                        help="as --llm-threshold (1.0 escalates every ticket); default: the card's")
    parser.add_argument("--markdown", action="store_true", help="print a RESULTS.md section")
    args = parser.parse_args()

    server = FakeGemini(answer_for=lambda _text: answer_body("NETWORK", "NEGATIVE", 0.9)).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp_path = Path(tmp)
            src = tmp_path / "tickets.csv"
            make_input(src, args.rows)

            def config(concurrency: int) -> LLMConfig:
                return LLMConfig(api_key=API_KEY, model="gemini-bench", base_url=server.url,
                                 cache_dir=tmp_path / "cache",
                                 settings=EscalationSettings(concurrency=concurrency))

            server.script(*[Reply(delay=DELAY_SECONDS)] * args.rows)
            cold_s, cold = run(src, tmp_path / "cold.csv", config(COLD_CONCURRENCY), args.workers,
                               args.threshold)
            cold_requests = server.count
            warm_times, local_times, warm_requests = [], [], 0
            for _ in range(args.rounds):
                before = server.count
                seconds, warm = run(src, tmp_path / "warm.csv", config(4), args.workers,
                                    args.threshold)
                warm_requests += server.count - before
                warm_times.append(seconds)
                local_times.append(
                    run(src, tmp_path / "local.csv", None, args.workers, args.threshold)[0])
    finally:
        server.stop()

    warm_s, local_s = statistics.median(warm_times), statistics.median(local_times)
    escalated = sum(cold.llm.cache_lookups.values())
    figures = {
        "rows": args.rows, "escalated": escalated, "cold_requests": cold_requests,
        "cold_s": cold_s, "warm_requests": warm_requests, "warm_s": warm_s, "local_s": local_s,
        "warm_hits": warm.llm.cache_lookups["hit"], "ratio": local_s / warm_s,
    }
    print(_markdown(figures, args) if args.markdown else figures)
    if warm_requests or figures["ratio"] < 0.9:
        sys.exit(1)


def _markdown(f: dict, args: argparse.Namespace) -> str:
    thresholds = ("its card thresholds" if args.threshold is None
                  else f"--llm-threshold {args.threshold}")
    return f"""## LLM answer cache (`bench/llm_cache.py`)

{f['rows']:,} distinct tickets, shipped model with {thresholds}, {args.workers} model
workers; the fake Gemini server answers every request after {DELAY_SECONDS * 1000:.0f} ms.
Median of {args.rounds} alternating rounds for the warm and local-only runs.

| run | Gemini requests | wall time | rows/s |
|---|---:|---:|---:|
{_row(f"cold (empty cache, concurrency {COLD_CONCURRENCY})", f['cold_requests'], f['cold_s'], f)}
{_row(f"warm rerun ({f['warm_hits']:,} cache hits)", f['warm_requests'], f['warm_s'], f)}
{_row("local only (`--no-llm`)", 0, f['local_s'], f)}

Escalated (uncertain) tickets: {f['escalated']:,} of {f['rows']:,}
({f['escalated'] / f['rows']:.1%}). Warm rerun speed relative to local-only:
**{f['ratio']:.2f}x** (target >= 0.9x, with zero requests).
"""


def _row(name: str, requests: int, seconds: float, f: dict) -> str:
    return f"| {name} | {requests:,} | {seconds:.2f} s | {f['rows'] / seconds:,.0f} |"


if __name__ == "__main__":
    main()
