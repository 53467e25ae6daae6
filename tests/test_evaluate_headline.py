"""evaluate's headline: the share a run would flag at the model's thresholds, and how right
the kept tickets are; the same share classify flags."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from .conftest import ROOT

INDEPENDENT = ROOT / "data" / "eval" / "independent.csv"


def test_evaluate_flags_the_share_that_classify_marks_needs_review(cli, tmp_path: Path):
    r = cli("evaluate", INDEPENDENT, "--json")
    assert r.code == 0, r
    at = json.loads(r.stdout)["at_thresholds"]
    out = tmp_path / "out.csv"
    assert cli("classify", INDEPENDENT, "-o", out, "--no-llm", "--quiet").code == 0
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    flagged = sum(row["needs_review"] == "true" for row in rows) / len(rows)
    assert at["flagged"] == flagged
    kept = [row for row in rows if row["needs_review"] == "false"]
    accuracy = sum(row["category"] == row["input_category"] for row in kept) / len(kept)
    assert at["kept_accuracy"]["category"] == accuracy


def test_the_headline_leads_the_evaluation(cli):
    r = cli("evaluate", INDEPENDENT)
    assert r.code == 0, r
    assert "flagged" in r.stdout.splitlines()[1]
