"""The learning loop, measured: bench/data/flywheel.csv (8 nights, 16 recurring issues told by
16 customers each, plus one-off tickets; bench/data/FLYWHEEL.md) replayed night by night
through the real CLI — `ticketclf classify --llm --cache-dir C` against a stand-in Gemini
(tests/fake_gemini.py) that answers the true labels 90 % of the time (seeded), then
`ticketclf learn --models-dir M` after night 4 (and, with --weekly, after night 8's week
too), which promotes NEW only through its gate.

Per night: the local model's macro-F1 (classify --no-llm against the true labels), the share it
flags as uncertain (what the LLM would be paid for) and the LLM requests sent. After the run:
BASE against the learned model on nights 5-8, recurring issues (new wordings of learned
issues) and one-off tickets apart, and on BASE's own held-out data.

    .venv/bin/python bench/flywheel.py [--llm-threshold card|1.0] [--llm-sentiment]
        [--wrong-sentiment] [--weekly] [--plot bench/flywheel.png]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sklearn.metrics import f1_score  # noqa: E402

from tests.fake_gemini import API_KEY, FakeGemini, answer_body  # noqa: E402
from ticketclf.llm.redact import redact  # noqa: E402
from ticketclf.schema import CATEGORIES, SENTIMENTS  # noqa: E402

DATA = ROOT / "bench" / "data" / "flywheel.csv"
SHIPPED = ROOT / "models" / "default"
NIGHTS = range(1, 9)
LEARN_AFTER = 4
HEADS = ("category", "sentiment")


def ticketclf(*args: str | Path, env: dict[str, str], check: bool = True) -> int:
    result = subprocess.run([sys.executable, "-m", "ticketclf", *map(str, args)], env=env,
                            capture_output=True, text=True)
    if check and result.returncode != 0:
        raise SystemExit(f"ticketclf {args[0]} exited {result.returncode}: "
                         f"{result.stderr[-2000:]}")
    return result.returncode


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def write_tickets(path: Path, rows: Sequence[dict[str, str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["id", "text"])
        writer.writerows([r["id"], r["text"]] for r in rows)
    return path


def stand_in(rows: Sequence[dict[str, str]], accuracy: float, seed: int,
             wrong_sentiment: bool) -> FakeGemini:
    """The fake answers a ticket's true labels with probability `accuracy`, else another
    category (as bench/llm_hybrid.py's does) and, with `wrong_sentiment`, another sentiment
    too; its stated confidence does not tell right from wrong."""
    truth = {redact(r["text"]): (r["category"], r["sentiment"]) for r in rows}

    def answer(redacted: str) -> dict[str, Any]:
        category, sentiment = truth[redacted]
        rng = random.Random(f"{seed}\0{redacted}")
        if rng.random() >= accuracy:
            category = rng.choice([c for c in CATEGORIES if c != category])
            if wrong_sentiment:
                sentiment = rng.choice([s for s in SENTIMENTS if s != sentiment])
        return answer_body(category, sentiment, round(rng.uniform(0.82, 0.98), 2))

    return FakeGemini(answer_for=answer).start()


def local_scores(model: str | Path, rows: Sequence[dict[str, str]], work: Path, name: str,
                 env: dict[str, str]) -> dict[str, float]:
    """The local model alone on these rows: macro-F1 per head and the share it flags."""
    out = work / f"{name}.local.csv"
    ticketclf("classify", write_tickets(work / f"{name}.csv", rows), "-o", out, "--no-llm",
              "--model", model, "--workers", "1", "--quiet", env=env)
    predicted = {r["id"]: r for r in read_rows(out)}
    scores = {f"{h}_f1": float(f1_score([r[h] for r in rows],
                                        [predicted[r["id"]][h] for r in rows],
                                        average="macro", zero_division=0)) for h in HEADS}
    scores["flagged"] = sum(predicted[r["id"]]["needs_review"] == "true"
                            for r in rows) / len(rows)
    return scores


def holdout_scores(model: str | Path, env: dict[str, str]) -> dict[str, float]:
    result = subprocess.run([sys.executable, "-m", "ticketclf", "evaluate",
                             str(SHIPPED / "holdout.csv.gz"), "--model", str(model), "--json"],
                            env=env, capture_output=True, text=True, check=True)
    heads = json.loads(result.stdout)["heads"]
    return {f"{h}_f1": heads[h]["macro_f1"] for h in HEADS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llm-threshold", default="1.0",
                        help="'card' (the model card's thresholds) or a number")
    parser.add_argument("--llm-accuracy", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--wrong-sentiment", action="store_true",
                        help="the stand-in's wrong answers get a wrong sentiment too")
    parser.add_argument("--weekly", action="store_true", help="also learn after night 8")
    parser.add_argument("--llm-sentiment", action="store_true",
                        help="learn --llm-sentiment: learn the LLM's sentiment too")
    parser.add_argument("--plot", type=Path, default=ROOT / "bench" / "flywheel.png")
    parser.add_argument("--work", type=Path, help="keep the run's files here")
    args = parser.parse_args()
    rows = read_rows(DATA)
    work = args.work or Path(tempfile.mkdtemp(prefix="flywheel-"))
    work.mkdir(parents=True, exist_ok=True)
    models, cache = work / "models", work / "cache"
    server = stand_in(rows, args.llm_accuracy, args.seed, args.wrong_sentiment)
    env = {**os.environ, "GEMINI_API_KEY": API_KEY, "TICKETCLF_GEMINI_BASE_URL": server.url,
           "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1", "TICKETCLF_LOG_LEVEL": "WARNING",
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    threshold = [] if args.llm_threshold == "card" else ["--llm-threshold", args.llm_threshold]
    ticketclf("promote", "--models-dir", models, "--to", SHIPPED, env=env)
    nights: list[dict[str, Any]] = []
    learned: list[dict[str, Any]] = []
    try:
        for night in NIGHTS:
            tonight = [r for r in rows if int(r["night"]) == night]
            before = server.count
            ticketclf("classify", write_tickets(work / f"night{night}.csv", tonight),
                      "-o", work / f"night{night}.out.csv", "--llm", *threshold,
                      "--cache-dir", cache, "--model", models, "--workers", "1", "--quiet",
                      env=env)
            nights.append({"night": night, "llm_requests": server.count - before,
                           **local_scores(models, tonight, work, f"night{night}", env)})
            if night == LEARN_AFTER or (args.weekly and night == NIGHTS[-1]):
                present = {p.name for p in models.iterdir()}
                code = ticketclf("learn", "--models-dir", models, "--cache-dir", cache,
                                 *(["--llm-sentiment"] if args.llm_sentiment else []),
                                 env=env, check=False)
                if code not in (0, 3):
                    raise SystemExit(f"ticketclf learn exited {code}")
                (candidate,) = {p.name for p in models.iterdir()} - present
                learned.append({"after_night": night, "promoted": code == 0,
                                "candidate": candidate})
    finally:
        server.stop()
    later = [r for r in rows if int(r["night"]) > LEARN_AFTER]
    # The first learned model, promoted or not: what one learn buys.
    first = learned[0]["candidate"] if learned else None
    comparison = {}
    for name, subset in (("recurring, nights 5-8", [r for r in later if r["issue"] != "oneoff"]),
                         ("one-off, nights 5-8", [r for r in later if r["issue"] == "oneoff"])):
        key = name.split(",")[0]
        comparison[name] = {
            "base": local_scores(SHIPPED, subset, work, f"base-{key}", env),
            "learned": local_scores(models / first, subset, work, f"new-{key}", env)
            if first else None}
    comparison["BASE's held-out"] = {
        "base": holdout_scores(SHIPPED, env),
        "learned": holdout_scores(models / first, env) if first else None}
    print_markdown(nights, learned, comparison, args)
    plot(nights, args.plot)


def print_markdown(nights: list[dict[str, Any]], learned: list[dict[str, Any]],
                   comparison: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"LLM threshold {args.llm_threshold}, stand-in LLM accuracy {args.llm_accuracy}, "
          f"seed {args.seed}; learn after night {LEARN_AFTER}"
          + (" and night 8" if args.weekly else "") + ": "
          + ", ".join(f"after night {x['after_night']} "
                      f"{x['candidate']} {'promoted' if x['promoted'] else 'NOT promoted'}"
                      for x in learned))
    print()
    print("| night | category macro-F1 | sentiment macro-F1 | flagged | LLM requests |")
    print("|---:|---:|---:|---:|---:|")
    for n in nights:
        print(f"| {n['night']} | {n['category_f1']:.3f} | {n['sentiment_f1']:.3f} | "
              f"{n['flagged']:.1%} | {n['llm_requests']} |")
    print()
    print("| tickets | category macro-F1 BASE → learned | sentiment macro-F1 BASE → learned "
          "| flagged BASE → learned |")
    print("|---|---:|---:|---:|")
    for name, c in comparison.items():
        base, new = c["base"], c["learned"] or {}
        cells = [f"{base[f'{h}_f1']:.3f} → {new.get(f'{h}_f1', float('nan')):.3f}"
                 for h in HEADS]
        flagged = (f"{base['flagged']:.1%} → {new['flagged']:.1%}" if "flagged" in base
                   and new else "-")
        print(f"| {name} | {cells[0]} | {cells[1]} | {flagged} |")


def plot(nights: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [n["night"] for n in nights]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    top.plot(x, [n["category_f1"] for n in nights], marker="o", label="category macro-F1")
    top.plot(x, [n["sentiment_f1"] for n in nights], marker="o", label="sentiment macro-F1")
    top.plot(x, [n["flagged"] for n in nights], marker="s", label="share flagged")
    top.axvline(LEARN_AFTER + 0.5, color="grey", linestyle="--", linewidth=1)
    top.text(LEARN_AFTER + 0.55, 0.05, "learn + promote", color="grey")
    top.set_ylim(0, 1)
    top.legend(loc="lower right", fontsize=8)
    top.set_title("local model per night (bench/flywheel.py)")
    bottom.bar(x, [n["llm_requests"] for n in nights], color="tab:purple")
    bottom.set_ylabel("LLM requests")
    bottom.set_xlabel("night")
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


if __name__ == "__main__":
    main()
