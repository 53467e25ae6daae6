"""Rebuild the shipped default model (`make model`).

Training set: the hand-written telecom corpus in data/telecom/ (80 %, the other 20 % held
out by a stable hash of the text) plus the public sets in ../shared/data relabelled with
data/public_mapping.json. Writes the model and card to --out, the held-out scores to
models/default/HOLDOUT.json, and the assembled training and held-out files to build/.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import random
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ticketclf.model.train import TrainSpec, train  # noqa: E402

HOLDOUT_PERCENT = 20
SEED = 7


def is_holdout(text: str) -> bool:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % 100 < HOLDOUT_PERCENT


def handwritten(corpus_dir: Path) -> tuple[list[dict], list[dict]]:
    train_rows, holdout_rows = [], []
    for path in sorted(corpus_dir.glob("*.csv")):
        with open(path, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                rec = {"text": row["text"], "category": row["category"],
                       "sentiment": row["sentiment"], "source": f"telecom/{path.name}"}
                (holdout_rows if is_holdout(row["text"]) else train_rows).append(rec)
    return train_rows, holdout_rows


def _capped(rows: list[tuple[str, str]], mapping: dict, source: str) -> list[dict]:
    """Rows whose label is mapped, at most per_label_cap per source label (seeded sample)."""
    by_label: dict[str, list[str]] = defaultdict(list)
    for text, label in rows:
        if label in mapping["labels"]:
            by_label[label].append(text)
    rng = random.Random(SEED)
    out = []
    for label in sorted(by_label):
        texts = sorted(set(by_label[label]))
        rng.shuffle(texts)
        for text in texts[: mapping["per_label_cap"]]:
            out.append({"text": text, "category": mapping["labels"][label], "sentiment": "",
                        "source": source})
    return out


def banking77(shared: Path, mapping: dict) -> list[dict]:
    with open(shared / "banking77" / "train.csv", encoding="utf-8", newline="") as f:
        rows = [(r["text"], r["category"]) for r in csv.DictReader(f)]
    return _capped(rows, mapping, "banking77/train.csv")


def bitext(shared: Path, mapping: dict) -> list[dict]:
    placeholder = re.compile(r"\{\{\s*([^}]+?)\s*\}\}")
    with open(shared / "bitext" / "bitext_20k_sample.csv", encoding="utf-8-sig", newline="") as f:
        rows = [(placeholder.sub(lambda m: m.group(1).lower(), r["utterance"]), r["intent"])
                for r in csv.DictReader(f)]
    return _capped(rows, mapping, "bitext/bitext_20k_sample.csv")


def multidogo(shared: Path, mapping: dict) -> list[dict]:
    rows = []
    for path in sorted((shared / "multidogo").glob("*_train.tsv")):
        with open(path, encoding="utf-8", newline="") as f:
            for fields in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                if len(fields) == 6 and len(fields[3].split()) >= 3:
                    rows.append((fields[3], fields[5]))
    return _capped(rows, mapping, "multidogo/*_train.tsv")


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "category", "sentiment", "source"],
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared-data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "models" / "default")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "model")
    args = parser.parse_args()
    mapping = json.loads((ROOT / "data" / "public_mapping.json").read_text())
    hand_train, hand_holdout = handwritten(ROOT / "data" / "telecom")
    public = (banking77(args.shared_data, mapping["banking77"])
              + bitext(args.shared_data, mapping["bitext"])
              + multidogo(args.shared_data, mapping["multidogo"]))
    train_rows = hand_train + public
    write_csv(args.work / "train.csv", train_rows)
    write_csv(args.work / "holdout.csv", hand_holdout)
    counts = {
        "handwritten_train": len(hand_train), "handwritten_holdout": len(hand_holdout),
        "public": dict(Counter(r["source"] for r in public)),
        "category": dict(sorted(Counter(r["category"] for r in train_rows).items())),
        "sentiment": dict(sorted(Counter(r["sentiment"] for r in train_rows
                                         if r["sentiment"]).items())),
    }
    print(json.dumps(counts, indent=2))
    card = train(TrainSpec(files=[args.work / "train.csv"]), args.out, progress=print)
    print(f"model {card['version']} in {card['train_seconds']} s -> {args.out}")


if __name__ == "__main__":
    main()
