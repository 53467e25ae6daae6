"""`ticketclf review`: the worklist from a real classify output and the real cache, and its
round trip — export, fill in, learn — in which a person's label beats the LLM's."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

from ticketclf.errors import ExitCode
from ticketclf.learn import TRAINING_FILE
from ticketclf.llm.redact import redact
from ticketclf.review import WORKLIST_COLUMNS

from .conftest import write_csv
from .fake_gemini import answer_body
from .test_learn import QUORVEX, base  # noqa: F401 - the module's base-model fixture

TEXTS = [
    "no signal at all in Leeds since this morning, is there an outage?",
    "I was charged twice for November, please refund the second payment",
    "router keeps dropping wifi every evening",
    "please cancel my contract, I am moving abroad",
    "-the quorvex thing again, call 07700 900456",  # a CSV formula guard and a phone number
    *QUORVEX[:5],
]


def classified(cli, tmp_path: Path, model: Path, fmt: str = "csv") -> Path:
    data = write_csv(tmp_path / "t.csv", ["ticket_id", "text"],
                     [[f"T{i}", t] for i, t in enumerate(TEXTS)])
    out = tmp_path / f"t.out.{fmt}"
    r = cli("classify", data, "-o", out, "--llm", "--llm-threshold", "1.0", "--cache-dir",
            tmp_path / "c", "--model", model, "--workers", "1", "--quiet")
    assert r.code == 0, r
    return out


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_worklist_lists_disagreements_most_valuable_first_with_empty_label_columns(
        cli, tmp_path, gemini_env, base):  # noqa: F811
    gemini_env.answer_for = lambda _text: answer_body("CANCELLATION", "CRITICAL", 0.95)
    out = classified(cli, tmp_path, base)
    r = cli("review", out, "-o", tmp_path / "w.csv", "--model", base, "--cache-dir",
            tmp_path / "c")
    assert r.code == 0, r
    rows = read(tmp_path / "w.csv")
    assert list(rows[0]) == list(WORKLIST_COLUMNS)
    assert {r["category"] for r in rows} == {""} and {r["sentiment"] for r in rows} == {""}
    # The LLM said CANCELLATION/CRITICAL to everything: every ticket disagrees on some head.
    assert len(rows) == len(TEXTS) and all("disagree" in r["reasons"] for r in rows)
    assert {r["llm_category"] for r in rows} == {"CANCELLATION"}
    values = [float(r["value"]) for r in rows]
    assert values == sorted(values, reverse=True)
    assert "'-the quorvex thing again" in (tmp_path / "w.csv").read_text()  # guarded again
    r = cli("review", out, "-o", tmp_path / "w2.jsonl", "--model", base, "--cache-dir",
            tmp_path / "c", "--limit", "3")
    lines = [json.loads(line) for line in (tmp_path / "w2.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines] == [x["id"] for x in rows[:3]]


def test_review_reads_a_jsonl_output_and_falls_back_to_its_columns_without_a_cache(
        cli, tmp_path, gemini_env, base):  # noqa: F811
    gemini_env.answer_for = lambda _text: answer_body("GENERAL", "POSITIVE", 0.9)
    out = classified(cli, tmp_path, base, fmt="jsonl")
    assert cli("cache", "clear", "--cache-dir", tmp_path / "c").code == 0
    r = cli("review", out, "-o", tmp_path / "w.csv", "--model", base, "--cache-dir",
            tmp_path / "c")
    assert r.code == 0, r
    rows = read(tmp_path / "w.csv")
    assert rows and {r["llm_category"] for r in rows} <= {"GENERAL"}
    assert cli("review", tmp_path / "missing.csv", "--model", base).code == ExitCode.NO_INPUT


def test_a_filled_in_worklist_is_training_data_and_the_human_label_beats_the_llms(
        cli, tmp_path, gemini_env, base):  # noqa: F811
    gemini_env.answer_for = lambda _text: answer_body("BILLING", "NEUTRAL", 0.95)
    out = classified(cli, tmp_path, base)
    worklist = tmp_path / "w.csv"
    assert cli("review", out, "-o", worklist, "--model", base, "--cache-dir",
               tmp_path / "c").code == 0
    rows = read(worklist)
    labelled = set()
    for row in rows:  # the reviewer labels the quorvex tickets NETWORK, leaves the rest
        if "quorvex" in row["text"].lower():
            row["category"] = "NETWORK"
            labelled.add(redact(row["text"].removeprefix("'")))
    assert len(labelled) >= 2
    with open(worklist, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(WORKLIST_COLUMNS), lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(rows)
    r = cli("learn", "--model", base, "--cache-dir", tmp_path / "c", "--labels", worklist,
            "--llm-sentiment", "-o", tmp_path / "m")
    assert r.code == 0, r
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    lineage = card["lineage"]
    assert lineage["rows"]["human"] + lineage["held_out"].get("human", 0) == len(labelled)
    with gzip.open(tmp_path / "m" / TRAINING_FILE, "rt", newline="") as f:
        learned = {r["text"]: r for r in csv.DictReader(f) if r["source"] in ("llm", "human")}
    with gzip.open(tmp_path / "m" / "holdout.csv.gz", "rt", newline="") as f:
        learned |= {r["text"]: r for r in csv.DictReader(f) if r["source"] in ("llm", "human")}
    guarded = redact(TEXTS[4])
    assert "[PHONE]" in guarded and guarded in learned  # matched the cached text exactly
    for text, row in learned.items():
        if text in labelled:
            # the person's category, the LLM's sentiment (the person left it empty)
            assert (row["category"], row["sentiment"], row["source"]) == \
                ("NETWORK", "NEUTRAL", "human")
        else:
            assert (row["category"], row["source"]) == ("BILLING", "llm")
    assert not any("900456" in text for text in learned)
