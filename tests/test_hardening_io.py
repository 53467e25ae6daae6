"""Issue 16, input and output: what real exports and real file systems do to a run. Outputs
never destroy inputs, devices, FIFOs or symlinks; output is valid JSON / safe CSV whatever the
input holds; damaged or oddly encoded inputs end in their documented exit code with a line
that says where; Excel's and Zendesk's exports are read as they come. Real files, devices,
FIFOs and processes throughout."""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import os
import stat
import subprocess
import threading
import tracemalloc
from pathlib import Path

import pytest

from ticketclf.errors import OutputError, UsageError
from ticketclf.io.readers import ColumnMap, ReadOptions, TicketReader, resolve_columns
from ticketclf.io.sources import open_source
from ticketclf.io.writers import AtomicFile
from ticketclf.schema import RESULT_COLUMN_NAMES

from .conftest import SHIPPED_MODEL, lose_a_signal, ticketclf_cmd, write_csv
from .leakcheck import scan as scan_for_leaks
from .test_classify import read_csv, read_rejects

ROWS = [["1", "my broadband has been down all day"], ["2", "please refund the extra charge"]]
MiB = 1 << 20


def error_lines(stderr: str) -> list[str]:
    """What a person reads: the lines that are not JSON log records."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("{")]


def json_records(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def tickets_csv(tmp_path: Path, name: str = "in.csv") -> Path:
    return write_csv(tmp_path / name, ["id", "text"], ROWS)


def write_jsonl(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def read_tickets(path: Path, **options: object) -> tuple[list, list]:
    reader = TicketReader(open_source(str(path)), ReadOptions(**options))  # type: ignore[arg-type]
    try:
        batches = list(reader.batches())
    finally:
        reader.close()
    return [t for b in batches for t in b.tickets], [r for b in batches for r in b.rejects]


# --- 1. no output overwrites an input, nor the other output ------------------------------


@pytest.mark.parametrize("spelling", ["same path", "dotted path", "symlink", "hard link"])
def test_an_output_that_is_an_input_is_refused_with_2_and_the_input_kept(cli, tmp_path,
                                                                        spelling):
    src = tickets_csv(tmp_path)
    before = src.read_bytes()
    out = {"same path": str(src), "dotted path": f"{tmp_path}/./in.csv",
           "symlink": str(tmp_path / "link.csv"), "hard link": str(tmp_path / "hard.csv")}[spelling]
    if spelling == "symlink":
        os.symlink(src, out)
    if spelling == "hard link":
        os.link(src, out)
    r = cli("classify", src, "-o", out, "-q")
    assert r.code == 2, r
    assert error_lines(r.stderr) == [
        f"error: -o {out} is the input {src}: writing it would destroy the input",
        "  hint: choose another output path"]
    assert src.read_bytes() == before


def test_rejects_that_are_an_input_or_the_output_are_refused_with_2(cli, tmp_path):
    src = tickets_csv(tmp_path)
    before = src.read_bytes()
    r = cli("classify", src, "-o", tmp_path / "o.csv", "--rejects", src, "-q")
    assert r.code == 2, r
    assert error_lines(r.stderr)[0] == (
        f"error: --rejects {src} is the input {src}: writing it would destroy the input")
    out = tmp_path / "o.csv"
    r = cli("classify", src, "-o", out, "--rejects", f"{tmp_path}/./o.csv", "-q")
    assert r.code == 2, r
    assert error_lines(r.stderr) == [
        f"error: -o {out} and --rejects {tmp_path}/./o.csv are the same file",
        "  hint: give the rejects their own path"]
    assert src.read_bytes() == before and not out.exists()


def test_stdout_appended_to_the_input_is_refused_instead_of_reading_its_own_rows(tmp_path):
    """`classify in.csv -o - >> in.csv` would read the rows it appends, forever."""
    src = tickets_csv(tmp_path)
    before = src.read_bytes()
    with open(src, "ab") as stdout:
        r = subprocess.run(ticketclf_cmd("classify", src, "-o", "-", "-q"), stdout=stdout,
                           stderr=subprocess.PIPE, timeout=60, text=True)
    assert r.returncode == 2, r.stderr
    assert error_lines(r.stderr)[0] == (
        f"error: -o stdout is the input {src}: writing it would destroy the input")
    assert src.read_bytes() == before


def test_stdin_redirected_from_the_output_file_is_refused(tmp_path):
    src = tickets_csv(tmp_path)
    with open(src, "rb") as stdin:
        r = subprocess.run(ticketclf_cmd("classify", "-", "-o", src, "-q"), stdin=stdin,
                           capture_output=True, timeout=60, text=True)
    assert r.returncode == 2, r.stderr
    assert error_lines(r.stderr)[0] == (
        f"error: -o {src} is the input (stdin): writing it would destroy the input")


@pytest.mark.parametrize(("args", "message"), [
    (["-o", ""], "error: -o is empty"),
    (["--rejects", ""], "error: --rejects is empty"),
    (["--rejects", "-"], "error: --rejects - is not supported: rejects go to a file"),
])
def test_an_empty_output_or_rejects_on_stdout_is_a_usage_error(cli, tmp_path, args, message):
    src = tickets_csv(tmp_path)
    r = cli("classify", src, *args, "-q")
    assert r.code == 2, r
    assert error_lines(r.stderr)[0] == message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


# --- 2. devices, FIFOs and symlinks at the output path ------------------------------------


def make_char_device(path: Path, like: str) -> Path:
    """A device node with the numbers of /dev/null or /dev/full, in the test's own directory
    (so that a regression replaces this node, never the machine's)."""
    rdev = os.stat(like).st_rdev
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, rdev)
    except PermissionError:
        pytest.skip("SKIPPED, NOT TESTED: cannot make a device node (needs CAP_MKNOD)")
    return path


def test_output_into_a_null_device_writes_through_and_keeps_the_device(cli, tmp_path):
    src = tickets_csv(tmp_path)
    null = make_char_device(tmp_path / "null", "/dev/null")
    r = cli("classify", src, "-o", null, "--output-format", "csv", "--rejects", null, "-q")
    assert r.code == 0, r
    assert stat.S_ISCHR(null.stat().st_mode)
    assert null.stat().st_rdev == os.stat("/dev/null").st_rdev
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "null"]  # no temporaries


def test_output_into_a_full_device_exits_73_and_keeps_the_device(cli, tmp_path):
    src = tickets_csv(tmp_path)
    full = make_char_device(tmp_path / "full.csv", "/dev/full")
    r = cli("classify", src, "-o", full, "-q")
    assert r.code == 73, r
    assert error_lines(r.stderr) == [f"error: cannot write {full}: No space left on device",
                                     "  hint: free some space or choose another -o"]
    assert stat.S_ISCHR(full.stat().st_mode)


def test_output_into_a_fifo_streams_into_it_and_keeps_the_fifo(cli, tmp_path):
    src = tickets_csv(tmp_path)
    fifo = tmp_path / "out.csv"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    r = cli("classify", src, "-o", fifo, "-q")
    reader.join(timeout=30)
    if reader.is_alive():  # the run never opened the FIFO: let the reader go
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert r.code == 0, r
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    rows = list(csv.DictReader(io.StringIO(got[0].decode())))
    assert [row["id"] for row in rows] == ["1", "2"]


def test_output_through_a_symlink_replaces_its_target_and_keeps_the_link(cli, tmp_path):
    src = tickets_csv(tmp_path)
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "out.csv"
    target.write_text("yesterday's output\n")
    link = tmp_path / "out.csv"
    link.symlink_to(target)
    dangling = tmp_path / "new.csv"
    dangling.symlink_to(tmp_path / "real" / "new.csv")
    for out in (link, dangling):
        assert cli("classify", src, "-o", out, "-q").code == 0
        assert out.is_symlink()
        assert [row["id"] for row in read_csv(out.resolve())] == ["1", "2"]
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["new.csv", "out.csv"]


def test_an_atomic_file_refuses_to_replace_a_fifo_or_a_directory(tmp_path):
    fifo = tmp_path / "card.json"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="it is not a regular file"), AtomicFile(fifo):
        pass
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    with pytest.raises(OutputError, match="it is a directory"), AtomicFile(tmp_path):
        pass


def test_an_output_path_that_is_a_directory_exits_73_before_reading(cli, tmp_path):
    src = tickets_csv(tmp_path)
    (tmp_path / "o.csv").mkdir()
    r = cli("classify", src, "-o", tmp_path / "o.csv", "-q")
    assert r.code == 73, r
    assert error_lines(r.stderr)[0] == (
        f"error: cannot write {tmp_path / 'o.csv'}: it is a directory")


# --- 3, 4, 5. valid JSON, every key kept or named, no duplicate names ---------------------


def test_jsonl_output_holds_no_nan_or_infinity(cli, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl",
                      '{"id": 1, "text": "refund please", "score": NaN, "big": 1e999, '
                      '"nested": {"low": -Infinity, "list": [NaN, 1.5]}}\n')
    out = tmp_path / "o.jsonl"
    assert cli("classify", src, "-o", out, "-q").code == 0

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    (row,) = [json.loads(line, parse_constant=refuse) for line in out.read_text().splitlines()]
    json.dumps(row, allow_nan=False)  # and nothing non-finite hides in it
    assert (row["score"], row["big"], row["nested"]) == (None, None, {"low": None,
                                                                      "list": [None, 1.5]})
    out_csv = tmp_path / "o.csv"
    assert cli("classify", src, "-o", out_csv, "-q").code == 0
    (csv_row,) = read_csv(out_csv)
    assert (csv_row["score"], csv_row["big"]) == ("", "")
    assert json.loads(csv_row["nested"], parse_constant=refuse) == row["nested"]


def test_jsonl_output_renames_every_clash_with_a_result_column_not_only_line_ones(cli,
                                                                                  tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", "\n".join(json.dumps(o) for o in [
        {"id": 1, "text": "refund please"},
        {"id": 2, "text": "no signal", "priority": "P1"},
        {"id": 3, "text": "wifi down", "category": "old", "input_category": "older"},
    ]) + "\n")
    out = tmp_path / "o.jsonl"
    assert cli("classify", src, "-o", out, "-q").code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[1]["input_priority"] == "P1" and rows[1]["priority"] in {
        "LOW", "MEDIUM", "HIGH", "URGENT"}
    assert (rows[2]["input_category_2"], rows[2]["input_category"]) == ("old", "older")
    assert rows[2]["category"] in {"BILLING", "TECHNICAL", "NETWORK", "ACCOUNT", "PLAN",
                                   "CANCELLATION", "GENERAL"}


def test_csv_output_from_jsonl_warns_once_naming_each_dropped_key_never_its_value(cli,
                                                                                 tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", "\n".join(json.dumps(o) for o in [
        {"id": 1, "text": "refund please"},
        {"id": 2, "text": "no signal", "agent": "Wilhelmina Quartermaine", "sla": "4h"},
        {"id": 3, "text": "wifi down", "agent": "Bartholomew Fennimore"},
    ]) + "\n")
    out = tmp_path / "o.csv"
    r = cli("classify", src, "-o", out, "-q", "--log-format", "json")
    assert r.code == 0, r
    (warning,) = [rec for rec in json_records(r.stderr) if rec.get("event") == "keys_dropped"]
    assert warning["level"] == "WARNING" and (warning["keys"], warning["cells"]) == (
        ["agent", "sla"], 3)
    assert "'agent', 'sla'" in warning["message"]
    assert "Wilhelmina" not in r.stderr and "Bartholomew" not in r.stderr
    assert list(read_csv(out)[0])[:2] == ["id", "text"]


def test_category_and_input_category_columns_get_distinct_output_names(cli, tmp_path):
    src = write_csv(tmp_path / "in.csv", ["id", "text", "category", "input_category"],
                    [["1", "refund please", "BILLING", "old label"]])
    out = tmp_path / "o.csv"
    assert cli("classify", src, "-o", out, "-q").code == 0
    with open(out, newline="") as f:
        header = next(csv.reader(f))
    assert header == ["id", "text", "input_category_2", "input_category", *RESULT_COLUMN_NAMES]
    (row,) = read_csv(out)
    assert (row["input_category_2"], row["input_category"]) == ("BILLING", "old label")


# --- 8, 9, 10. overlong records, damaged gzip, lone surrogates --------------------------


def gzip_with_a_long_line(path: Path, line_mib: int) -> Path:
    """id,text rows 1 and 3 around a row 2 of `line_mib` MiB, written a MiB at a time."""
    chunk = b"a" * MiB
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(b"id,text\n1,refund please\n2,")
        for _ in range(line_mib):
            f.write(chunk)
        f.write(b"\n3,no signal\n")
    return path


def test_an_overlong_csv_record_is_rejected_with_its_line_in_bounded_memory(tmp_path):
    src = gzip_with_a_long_line(tmp_path / "long.csv.gz", 50)
    assert src.stat().st_size < MiB
    tracemalloc.start()
    try:
        tickets, rejects = read_tickets(src, max_record_chars=MiB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [t.id for t in tickets] == ["1", "3"]
    assert [(r.line, r.reason) for r in rejects] == [(3, "record_too_long: over 1,048,576 "
                                                          "characters")]
    assert peak < 12 * MiB, f"peak {peak / MiB:.0f} MiB for a 50 MiB line"


def test_a_multi_line_record_over_the_cap_is_rejected_too(tmp_path):
    src = tmp_path / "quoted.csv"
    src.write_bytes(b'id,text\n1,refund please\n2,"' + b"line\n" * 100_000 + b'"\n3,no signal\n')
    tickets, rejects = read_tickets(src, max_record_chars=64 * 1024)
    assert rejects[0].line == 3 and rejects[0].reason.startswith("record_too_long")
    assert tickets[0].id == "1"


def test_an_overlong_gzipped_csv_record_at_the_default_cap_is_a_reject(cli, tmp_path):
    src = gzip_with_a_long_line(tmp_path / "long.csv.gz", 10)  # the cap: 8 Mi characters
    out = tmp_path / "o.csv"
    r = cli("classify", src, "-o", out, "-q", "--max-reject-rate", "1")
    assert r.code == 0, r
    assert [row["id"] for row in read_csv(out)] == ["1", "3"]
    assert [(x["line"], x["reason"]) for x in read_rejects(Path(f"{out}.rejects.jsonl"))] == [
        (3, "record_too_long: over 8,388,608 characters")]


def _damaged(kind: str) -> bytes:
    data = gzip.compress(b"id,text\n" + b"1,my broadband has been down all day\n" * 5000)
    if kind == "truncated":
        return data[:len(data) // 2]
    if kind == "trailing garbage":
        return data + b"<html>not found</html>"
    return data[:-8] + b"\0\0\0\0" + data[-4:]  # a wrong CRC-32


@pytest.mark.parametrize(("kind", "what"), [
    ("truncated", "is truncated: its gzip data ends early"),
    ("trailing garbage", "has bytes after its gzip data"),
    ("bad crc", "holds corrupt gzip data (CRC check failed"),
])
def test_a_damaged_gzip_exits_65_naming_the_file_and_the_damage(cli, tmp_path, kind, what):
    src = tmp_path / "t.csv.gz"
    src.write_bytes(_damaged(kind))
    out = tmp_path / "o.csv"
    r = cli("classify", src, "-o", out, "-q")
    assert r.code == 65, r
    lines = error_lines(r.stderr)
    assert lines[0].startswith(f"error: {src} {what}"), lines
    assert lines[1] == "  hint: fetch or export the file again; gzip -t checks a file"
    assert not out.exists()


def test_a_lone_surrogate_in_a_jsonl_row_is_rejected_and_the_run_goes_on(cli, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl",
                      '{"id": 1, "text": "refund please"}\n'
                      '{"id": 2, "text": "bad \\ud800 text"}\n'
                      '{"id": 3, "text": "no signal \\ud83d\\ude00"}\n'
                      '{"id": 4, "text": "wifi down", "note": "\\udfff"}\n'
                      '{"id": 5, "text": "escaped, not a surrogate: \\\\ud800"}\n')
    for out in (tmp_path / "o.jsonl", tmp_path / "o.csv"):
        r = cli("classify", src, "-o", out, "-q", "--max-reject-rate", "1")
        assert r.code == 0, r
        rejects = read_rejects(Path(f"{out}.rejects.jsonl"))
        assert [(x["line"], x["reason"].split(":")[0]) for x in rejects] == [
            (2, "invalid_unicode"), (4, "invalid_unicode")]
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text("utf-8").splitlines()]
    assert [(r["id"], r["text"]) for r in rows] == [
        (1, "refund please"), (3, "no signal \U0001f600"), (5, "escaped, not a surrogate: \\ud800")]


def test_a_lone_surrogate_from_an_exotic_encoding_is_written_escaped(cli, tmp_path):
    """No writer dies on a code point: what only `unicode_escape` can decode is escaped."""
    src = tmp_path / "in.csv"
    src.write_bytes(b"id,text\n1,refund \\ud800 please\n")
    out = tmp_path / "o.csv"
    assert cli("classify", src, "-o", out, "-q", "--encoding", "unicode_escape").code == 0
    assert read_csv(out)[0]["text"] == "refund \\ud800 please"


# --- 11, 12, 19. full stdout, bad encodings, where decoding failed ------------------------


def test_stdout_into_a_full_disk_exits_73_with_one_line(tmp_path):
    src = tickets_csv(tmp_path)
    with open("/dev/full", "wb") as full:
        r = subprocess.run(ticketclf_cmd("classify", src, "-o", "-", "-q", "--rejects",
                                         tmp_path / "rej.jsonl", "--log-level", "WARNING"),
                           stdout=full, stderr=subprocess.PIPE, timeout=60, text=True)
    scan_for_leaks(r.stderr, "stderr of ticketclf classify")
    assert r.returncode == 73, r.stderr
    assert error_lines(r.stderr) == ["error: cannot write stdout: No space left on device",
                                     "  hint: free some space or choose another -o"]


@pytest.mark.parametrize("command", ["classify", "compare"])
def test_an_unknown_encoding_is_a_usage_error_naming_it(cli, tmp_path, command):
    src = tickets_csv(tmp_path)
    args = [src, "-q"] if command == "classify" else [SHIPPED_MODEL, SHIPPED_MODEL, src]
    r = cli(command, *args, "--encoding", "klingon")
    assert r.code == 2, r
    assert error_lines(r.stderr) == [
        "error: unknown encoding 'klingon'",
        "  hint: pass a codec name, e.g. utf-8, cp1252, latin-1 or utf-16"]


def test_a_bytes_codec_or_a_bad_delimiter_is_refused_when_the_options_are_built():
    with pytest.raises(UsageError, match="'base64' is not a text encoding"):
        ReadOptions(encoding="base64")
    with pytest.raises(UsageError, match="bad --delimiter ';;'"):
        ReadOptions(delimiter=";;")
    assert ReadOptions(delimiter="\\t").delimiter == "\t"


def test_a_decoding_error_names_line_and_byte_offset_and_suggests_cp1252_first(cli, tmp_path):
    # far enough in that the bad byte is decoded many lines ahead of the row being read
    body = b"id,text\n" + b"".join(b"%d,my broadband has been down all day\n" % i
                                   for i in range(3000))
    bad = b"3000,caf\xe9 au lait\n"
    src = tmp_path / "t.csv"
    src.write_bytes(body + bad)
    r = cli("classify", src, "-o", tmp_path / "o.csv", "-q")
    assert r.code == 65, r
    offset = len(body) + bad.index(b"\xe9")
    assert error_lines(r.stderr) == [
        f"error: {src} is not valid utf-8-sig text at line 3,002, byte offset {offset:,} "
        "(byte b'\\xe9')",
        "  hint: pass its encoding: --encoding cp1252 (what Excel writes on Windows) or "
        "--encoding latin-1"]


def test_cp1252_text_is_read_right_and_read_as_latin1_warns_once(cli, tmp_path):
    src = tmp_path / "t.csv"
    src.write_bytes("id,text\n1,\u201cOverbilled\u201d by 12\u20ac\n2,again 5\u20ac\n"
                    .encode("cp1252"))
    out = tmp_path / "o.csv"
    r = cli("classify", src, "-o", out, "-q", "--encoding", "cp1252", "--log-format", "json")
    assert r.code == 0, r
    assert read_csv(out)[0]["text"] == "\u201cOverbilled\u201d by 12\u20ac"
    assert not [rec for rec in json_records(r.stderr) if rec.get("event") == "c1_controls"]
    r = cli("classify", src, "-o", out, "-q", "--encoding", "latin-1", "--log-format", "json")
    assert r.code == 0, r
    (warning,) = [rec for rec in json_records(r.stderr) if rec.get("event") == "c1_controls"]
    assert "rerun with --encoding cp1252" in warning["message"]


@pytest.mark.parametrize(("name", "encoding", "bom"), [
    ("t.csv", "utf-16-le", codecs.BOM_UTF16_LE),
    ("t.csv", "utf-16-be", codecs.BOM_UTF16_BE),
    ("t.jsonl", "utf-16-le", codecs.BOM_UTF16_LE),
    ("t.csv", "utf-32-le", codecs.BOM_UTF32_LE),
])
def test_utf16_and_utf32_files_with_a_bom_are_read_transparently(cli, tmp_path, name,
                                                                 encoding, bom):
    """Excel's "Unicode text": UTF-16 LE with a BOM, tab-separated."""
    texts = ["Rechnung \u00fcber 12 \u20ac zu hoch", "no signal"]
    content = ("id\ttext\n" + "".join(f"{i}\t{t}\n" for i, t in enumerate(texts))
               if name.endswith(".csv") else
               "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    src = tmp_path / name
    src.write_bytes(bom + content.encode(encoding))
    out = tmp_path / "o.csv"
    r = cli("classify", src, "-o", out, "-q")
    assert r.code == 0, r
    assert [row["text"] for row in read_csv(out)] == texts


# --- frictions: Excel and Zendesk exports, terminal escapes ------------------------------


@pytest.mark.parametrize(("content", "texts"), [
    (b"id;text\n1;Rechnung zu hoch, bitte pr\xc3\xbcfen\n2;\"Kein Netz; seit gestern\"\n",
     ["Rechnung zu hoch, bitte pr\u00fcfen", "Kein Netz; seit gestern"]),
    (b"id\ttext\n1\tok, so: my bill\n2\tno signal\n", ["ok, so: my bill", "no signal"]),
    (b"id|text\n1|refund; please\n2|no signal\n", ["refund; please", "no signal"]),
    (b"id,text\n1,hello; there; refund\n2,no signal;\n", ["hello; there; refund", "no signal;"]),
    (b"text\nmy bill; again\n", ["my bill; again"]),
    (b"sep=;\nid;text\n1;a bill, again\n", ["a bill, again"]),
], ids=["semicolon", "tab", "pipe", "comma with semicolons in text", "one column",
        "excel sep line"])
def test_the_csv_delimiter_is_sniffed(cli, tmp_path, content, texts):
    src = tmp_path / "t.csv"
    src.write_bytes(content)
    out = tmp_path / "o.csv"
    r = cli("classify", src, "-o", out, "-q")
    assert r.code == 0, r
    assert [row["text"] for row in read_csv(out)] == texts


def test_the_delimiter_option_overrides_the_sniffer_and_excels_sep_line(cli, tmp_path):
    src = tmp_path / "t.csv"
    src.write_bytes(b"sep=;\nid|text\n1|a bill; again\n2|x|y\n")
    out = tmp_path / "o.csv"
    r = cli("classify", src, "-o", out, "-q", "--delimiter", "|", "--max-reject-rate", "1")
    assert r.code == 0, r
    assert [row["text"] for row in read_csv(out)] == ["a bill; again"]
    # the sep= line is a physical line: the bad row is on line 4
    assert [(x["line"], x["reason"].split(":")[0])
            for x in read_rejects(Path(f"{out}.rejects.jsonl"))] == [(4, "wrong_field_count")]


def test_the_delimiter_is_sniffed_on_stdin_from_the_header_line(tmp_path):
    r = subprocess.run(ticketclf_cmd("classify", "-", "-o", "-", "-q", "--rejects",
                                     tmp_path / "rej.jsonl"),
                       input=b"id;text\n1;a bill, again\n", capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    (row,) = csv.DictReader(io.StringIO(r.stdout.decode()))
    assert row["text"] == "a bill, again"


def test_trailing_empty_header_cells_and_their_empty_fields_are_dropped(cli, tmp_path):
    src = tmp_path / "t.csv"
    src.write_bytes(b"id,text,,\n1,refund please,,\n2,no signal\n3,wifi down,,stray\n")
    out = tmp_path / "o.csv"
    r = cli("classify", src, "-o", out, "-q", "--max-reject-rate", "1")
    assert r.code == 0, r
    with open(out, newline="") as f:
        assert next(csv.reader(f)) == ["id", "text", *RESULT_COLUMN_NAMES]
    assert [row["id"] for row in read_csv(out)] == ["1", "2"]
    assert [(x["line"], x["reason"]) for x in read_rejects(Path(f"{out}.rejects.jsonl"))] == [
        (4, "wrong_field_count: expected 2, got 4")]


def test_a_zendesk_export_joins_subject_and_description_and_takes_ticket_id(tmp_path):
    src = write_csv(tmp_path / "zendesk.csv",
                    ["Ticket ID", "Subject", "Description", "Requester"],
                    [["4711", "Refund", "I was charged twice", "A. Person"],
                     ["4712", "", "no signal since Monday", "B. Person"]])
    tickets, rejects = read_tickets(src)
    assert [(t.id, t.text) for t in tickets] == [("4711", "Refund\nI was charged twice"),
                                                 ("4712", "no signal since Monday")]
    assert rejects == []
    assert resolve_columns(["TICKET_ID", "ticket text", "SUBJECT"], ReadOptions(), "x") == \
        ColumnMap(text=("SUBJECT", "ticket text"), id="TICKET_ID")


def test_an_empty_text_column_beside_a_full_description_picks_the_description(tmp_path):
    src = write_csv(tmp_path / "t.csv", ["id", "text", "description"],
                    [["1", "", "refund please"], ["2", " ", "no signal"]])
    tickets, _ = read_tickets(src)
    assert [t.text for t in tickets] == ["refund please", "no signal"]
    empty = write_csv(tmp_path / "e.csv", ["id", "text", "description"], [["1", "", ""]])
    tickets, rejects = read_tickets(empty)  # nothing anywhere: the first known name, as before
    assert tickets == [] and [r.reason for r in rejects] == ["empty_text"]


def test_terminal_escapes_are_neutralised_in_csv_and_escaped_in_jsonl(cli, tmp_path):
    text = "refund \x1b[31mnow\x1b[0m \x9b2J\x07 please\r\nthanks\tbye"
    src = write_jsonl(tmp_path / "in.jsonl",
                      json.dumps({"id": "\x1b]0;pwned\x07", "text": text}) + "\n")
    out = tmp_path / "o.csv"
    assert cli("classify", src, "-o", out, "-q").code == 0
    raw = out.read_text("utf-8")
    assert not any(c in raw for c in "\x1b\x9b\x07")
    (row,) = read_csv(out)
    assert row["text"] == "refund \ufffd[31mnow\ufffd[0m \ufffd2J\ufffd please\r\nthanks\tbye"
    assert row["id"] == "\ufffd]0;pwned\ufffd"
    out_jsonl = tmp_path / "o.jsonl"
    assert cli("classify", src, "-o", out_jsonl, "-q").code == 0
    raw = out_jsonl.read_text("utf-8")
    assert not any(c in raw for c in "\x1b\x9b\x07\r")
    assert json.loads(raw)["text"] == text  # lossless: only escaped


def test_the_shipped_model_sees_the_same_tickets_as_before_on_plain_csv(tmp_path):
    """Sniffing and column choice change nothing for the files that already worked."""
    src = Path(__file__).resolve().parent.parent / "samples" / "tickets.csv"
    tickets, rejects = read_tickets(src)
    with open(src, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(t.id, t.text) for t in tickets] == [(r["ticket_id"], r["text"]) for r in rows]
    assert rejects == []


def test_a_signal_whose_exception_was_swallowed_still_keeps_the_old_output(tmp_path):
    """A handler's exception can vanish inside C code that clears errors; the rename must
    not happen anyway (it did: a SIGINT run exited 0 with its output in place)."""
    import signal

    from ticketclf import interrupts
    from ticketclf.errors import Interrupted

    target = tmp_path / "out.csv"
    target.write_bytes(b"yesterday's output\n")
    with interrupts.signals_raise(), pytest.raises(Interrupted), AtomicFile(target) as f:
        f.write(b"half of today's\n")
        lose_a_signal(signal.SIGTERM)
    assert target.read_bytes() == b"yesterday's output\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]
