"""`ticketclf classify`: every row accounted for, outputs atomic, exit codes as documented."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ticketclf.schema import RESULT_COLUMN_NAMES

from .conftest import SAMPLES, run_cli, ticketclf_cmd, write_csv


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def read_rejects(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_csv_output_keeps_input_columns_in_order_then_result_columns(cli, tmp_path):
    out = tmp_path / "out.csv"
    r = cli("classify", SAMPLES / "tickets.csv", "-o", out, "--quiet")
    assert r.code == 0, r
    with open(out, newline="") as f:
        header = next(csv.reader(f))
    with open(SAMPLES / "tickets.csv", newline="") as f:
        input_header = next(csv.reader(f))
    assert header == input_header + list(RESULT_COLUMN_NAMES)
    rows = read_csv(out)
    with open(SAMPLES / "tickets.csv", newline="") as f:
        inputs = list(csv.DictReader(f))
    assert [r["ticket_id"] for r in rows] == [r["ticket_id"] for r in inputs]
    for row in rows:
        assert row["category"] in {"BILLING", "TECHNICAL", "NETWORK", "ACCOUNT", "PLAN",
                                   "CANCELLATION", "GENERAL"}
        assert row["sentiment"] in {"POSITIVE", "NEUTRAL", "NEGATIVE", "CRITICAL"}
        assert row["priority"] in {"LOW", "MEDIUM", "HIGH", "URGENT"}
        assert 0.0 <= float(row["category_confidence"]) <= 1.0
        assert row["decided_by"] == "model" and row["cached"] == "false"
        assert row["needs_review"] in {"true", "false"}


def test_default_output_goes_beside_the_input(cli, tmp_path):
    src = tmp_path / "export.csv"
    src.write_bytes((SAMPLES / "tickets.csv").read_bytes())
    assert cli("classify", src, "--quiet").code == 0
    assert (tmp_path / "export.classified.csv").exists()
    assert (tmp_path / "export.classified.csv.rejects.jsonl").read_text() == ""


def test_jsonl_input_joins_subject_and_body_and_writes_jsonl(cli, tmp_path):
    out = tmp_path / "out.jsonl"
    assert cli("classify", SAMPLES / "tickets.jsonl", "-o", out, "--quiet").code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    inputs = [json.loads(line) for line in (SAMPLES / "tickets.jsonl").read_text().splitlines()]
    assert len(rows) == len(inputs)
    for row, src in zip(rows, inputs, strict=True):
        assert {k: row[k] for k in src} == src
        assert row["cached"] is False and isinstance(row["category_confidence"], float)


def test_gzip_input_is_read_and_gzip_output_written(cli, tmp_path):
    src = tmp_path / "t.csv.gz"
    src.write_bytes(gzip.compress((SAMPLES / "tickets.csv").read_bytes()))
    out = tmp_path / "o.csv.gz"
    assert cli("classify", src, "-o", out, "--quiet").code == 0
    rows = list(csv.DictReader(io.StringIO(gzip.decompress(out.read_bytes()).decode())))
    assert len(rows) == len(read_csv(SAMPLES / "tickets.csv"))


def test_formula_cells_are_neutralised_in_csv(cli, tmp_path):
    src = write_csv(tmp_path / "in.csv", ["id", "text"],
                    [["=1+1", "=HYPERLINK(\"http://x\") my bill is wrong"],
                     ["2", "+44 7700 900123 keeps dropping calls"],
                     ["3", "-5 pounds taken twice"], ["4", "@provider my router is dead"]])
    out = tmp_path / "out.csv"
    assert cli("classify", src, "-o", out, "--quiet").code == 0
    rows = read_csv(out)
    assert rows[0]["id"] == "'=1+1"
    assert [r["text"][0] for r in rows] == ["'"] * 4


def test_text_column_is_auto_detected_and_can_be_named(cli, tmp_path):
    src = write_csv(tmp_path / "in.csv", ["ref", "notes", "message"],
                    [["1", "internal", "my internet is down"]])
    assert cli("classify", src, "-o", tmp_path / "a.csv", "-q").code == 0
    r = cli("classify", src, "-o", tmp_path / "b.csv", "-q", "--text-column", "notes")
    assert r.code == 0
    assert read_csv(tmp_path / "b.csv")[0]["notes"] == "internal"


def test_missing_text_column_is_a_one_line_error_listing_columns(cli, tmp_path):
    src = write_csv(tmp_path / "in.csv", ["id", "summary"], [["1", "hello"]])
    r = cli("classify", src, "-o", tmp_path / "o.csv")
    assert r.code == 65
    assert "columns found: id, summary" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"id,text\n1,my bill\n2,a,b\n3,router broken\n", "wrong_field_count"),
        (b"id,text\n1,my bill\n2,   \n3,router broken\n", "empty_text"),
        (b"id,text\n1,my bill\n2,nul\x00here\n3,router broken\n", "nul_byte"),
        (b"id,text\n1,my bill\n2," + b"x" * 300 + b"\n3,router broken\n", "text_too_long"),
    ],
)
def test_bad_csv_rows_go_to_rejects_with_their_line(cli, tmp_path, content, reason):
    src = tmp_path / "in.csv"
    src.write_bytes(content)
    out = tmp_path / "o.csv"
    r = cli("classify", src, "-o", out, "-q", "--max-text-chars", "200",
            "--max-reject-rate", "0.5")
    assert r.code == 0, r
    assert [row["id"] for row in read_csv(out)] == ["1", "3"]
    (reject,) = read_rejects(Path(f"{out}.rejects.jsonl"))
    assert reject["line"] == 3 and reject["reason"].startswith(reason)


def test_bad_jsonl_lines_go_to_rejects_with_their_line(cli, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "text": "no signal"}\n{broken\n[1, 2]\n{"id": 4, "text": ""}\n'
                   '{"id": 5, "text": "refund please"}\n')
    out = tmp_path / "o.jsonl"
    r = cli("classify", src, "-o", out, "-q", "--max-reject-rate", "1")
    assert r.code == 0, r
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == [1, 5]
    rejects = read_rejects(Path(f"{out}.rejects.jsonl"))
    assert [(x["line"], x["reason"].split(":")[0]) for x in rejects] == [
        (2, "invalid_json"), (3, "not_an_object"), (4, "empty_text")]


def test_reject_rate_above_the_limit_exits_65_after_writing_both_files(cli, tmp_path):
    src = tmp_path / "in.csv"
    src.write_bytes(b"id,text\n1,my bill\n2,\n3,\n")
    out = tmp_path / "o.csv"
    r = cli("classify", src, "-o", out, "-q", "--max-reject-rate", "0.5")
    assert r.code == 65
    assert "2 of 3 rows rejected" in r.stderr
    assert len(read_csv(out)) == 1 and len(read_rejects(Path(f"{out}.rejects.jsonl"))) == 2


def test_latin1_input_without_encoding_says_to_pass_encoding(cli, tmp_path):
    src = tmp_path / "in.csv"
    src.write_bytes("id,text\n1,caf\xe9 wifi is down\n".encode("latin-1"))
    r = cli("classify", src, "-o", tmp_path / "o.csv")
    assert r.code == 65 and "--encoding" in r.stderr
    assert cli("classify", src, "-o", tmp_path / "o.csv", "-q", "--encoding", "latin-1").code == 0
    assert read_csv(tmp_path / "o.csv")[0]["text"] == "caf\xe9 wifi is down"


def test_utf8_bom_is_accepted(cli, tmp_path):
    src = tmp_path / "in.csv"
    src.write_bytes(b"\xef\xbb\xbfid,text\r\n1,no signal at home\r\n")
    out = tmp_path / "o.csv"
    assert cli("classify", src, "-o", out, "-q").code == 0
    assert read_csv(out)[0]["id"] == "1"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["classify", "nope.csv"], 66, "input file not found"),
        (["classify", "{samples}/tickets.csv", "-o", "{tmp}/no/such/dir/o.csv"], 73,
         "output directory does not exist"),
        (["classify", "{samples}/tickets.csv", "--shard", "3/2"], 2, "--shard"),
        (["classify", "{samples}/tickets.csv", "-o", "{tmp}/o.txt"], 2, "output format"),
        (["classify", "{samples}/tickets.csv", "--model", "{tmp}"], 78, "no model card"),
        (["classify", "{empty}"], 65, "is empty"),
    ],
)
def test_errors_exit_with_documented_code_and_one_line(cli, tmp_path, args, code, message):
    (tmp_path / "empty.csv").write_bytes(b"")
    subs = {"samples": SAMPLES, "tmp": tmp_path, "empty": tmp_path / "empty.csv"}
    r = cli(*[a.format(**subs) for a in args])
    assert r.code == code, r
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_unknown_flag_is_usage_error(cli):
    assert cli("classify", "--no-such-flag", "x.csv").code == 2


def test_tampered_model_file_is_refused_with_78(cli, tmp_path, model_dir):
    copy = tmp_path / "model"
    copy.mkdir()
    for f in model_dir.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    data = bytearray((copy / "model.skops").read_bytes())
    data[-100] ^= 0xFF
    (copy / "model.skops").write_bytes(bytes(data))
    r = cli("classify", SAMPLES / "tickets.csv", "--model", copy, "-o", tmp_path / "o.csv")
    assert r.code == 78 and "does not match the SHA-256" in r.stderr
    assert not (tmp_path / "o.csv").exists()


def test_two_runs_give_byte_identical_output(cli, tmp_path):
    for name in ("a.csv", "b.csv"):
        assert cli("classify", SAMPLES / "tickets.csv", "-o", tmp_path / name, "-q").code == 0
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def big_csv(path: Path, rows: int) -> Path:
    texts = [r["text"] for r in read_csv(SAMPLES / "tickets.csv")]
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["id", "text"])
        for i in range(rows):
            w.writerow([f"T{i}", texts[i % len(texts)]])
    return path


def test_worker_processes_keep_input_order(cli, tmp_path):
    src = big_csv(tmp_path / "in.csv", 3000)
    out1, out2 = tmp_path / "w1.csv", tmp_path / "w2.csv"
    assert cli("classify", src, "-o", out1, "-q", "--workers", "1", "--batch-size", "250").code == 0
    assert cli("classify", src, "-o", out2, "-q", "--workers", "2", "--batch-size", "250").code == 0
    assert out1.read_bytes() == out2.read_bytes()


def test_shards_together_give_exactly_the_unsharded_rows(cli, tmp_path):
    src = big_csv(tmp_path / "in.csv", 500)
    with open(src, "a") as f:
        f.write("bad,row,here\n")
    assert cli("classify", src, "-o", tmp_path / "all.csv", "-q").code == 0
    parts, rejects = [], []
    for i in range(3):
        out = tmp_path / f"part{i}.csv"
        r = cli("classify", src, "-o", out, "-q", "--shard", f"{i}/3", "--max-reject-rate", "1")
        assert r.code == 0, r
        parts.append(read_csv(out))
        rejects += read_rejects(Path(f"{out}.rejects.jsonl"))
    assert all(parts), "every shard got some rows"
    merged = sorted((r for p in parts for r in p), key=lambda r: int(r["id"][1:]))
    assert merged == read_csv(tmp_path / "all.csv")
    assert rejects == read_rejects(tmp_path / "all.csv.rejects.jsonl")
    assert len(rejects) == 1


def test_stdin_to_stdout_streams_rows_before_input_ends(tmp_path):
    with subprocess.Popen(
        ticketclf_cmd("classify", "-", "-o", "-", "--batch-size", "1", "-q",
                      "--rejects", str(tmp_path / "rej.jsonl")),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    ) as proc:
        assert proc.stdin and proc.stdout
        proc.stdin.write(b"id,text\n1,my broadband has been down all day\n")
        proc.stdin.flush()
        header = proc.stdout.readline()
        first = proc.stdout.readline()  # arrives while stdin is still open
        assert header.startswith(b"id,text,category,")
        assert first.startswith(b"1,my broadband has been down all day,")
        proc.stdin.write(b"2,please refund the extra charge\n")
        proc.stdin.close()
        rest = proc.stdout.read()
        assert rest.startswith(b"2,please refund")
        assert proc.wait(timeout=30) == 0


def test_stdout_output_holds_only_rows(tmp_path):
    r = run_cli("classify", str(SAMPLES / "tickets.csv"), "-o", "-", "--log-format", "json",
                "--rejects", str(tmp_path / "rej.jsonl"))
    assert r.returncode == 0
    rows = list(csv.DictReader(io.StringIO(r.stdout.decode())))
    assert len(rows) == len(read_csv(SAMPLES / "tickets.csv"))


def _start_large_run(tmp_path: Path, rows: int) -> tuple[subprocess.Popen, Path, Path]:
    src = big_csv(tmp_path / "big.csv", rows)
    out = tmp_path / "out.csv"
    proc = subprocess.Popen(ticketclf_cmd("classify", str(src), "-o", str(out), "-q",
                                          "--batch-size", "500"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return proc, src, out


def _wait_for_temp_file(directory: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.name.startswith(".out.csv.") for p in directory.iterdir()):
            return
        time.sleep(0.05)
    raise AssertionError("the run never started writing")


def test_kill_9_leaves_nothing_at_the_output_path_and_a_rerun_succeeds(tmp_path):
    proc, src, out = _start_large_run(tmp_path, 60_000)
    _wait_for_temp_file(tmp_path)
    time.sleep(0.5)
    proc.kill()
    proc.communicate(timeout=30)
    assert not out.exists()
    r = run_cli("classify", str(src), "-o", str(out), "-q", timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(read_csv(out)) == 60_000


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_exits_with_its_code_and_writes_nothing(tmp_path, signum, code):
    proc, _, out = _start_large_run(tmp_path, 60_000)
    _wait_for_temp_file(tmp_path)
    started = time.monotonic()
    os.kill(proc.pid, signum)
    _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == code
    assert time.monotonic() - started < 10
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.csv.")]
    assert b"Traceback" not in stderr
