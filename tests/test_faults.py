"""Faults around a run, made real where the machine allows: a full disk and a read-only
directory are tmpfs mounts (the tests run as root; without the right to mount they skip and
say so), a file-size limit is RLIMIT_FSIZE, a hanging Gemini is the fake server holding its
answer. Each fault ends in its documented exit code with a one-line message, and never with a
partial file at the output path: rows are either all written or the run fails visibly.

Elsewhere: a corrupt, locked or misplaced cache (test_llm_escalation.py), a tampered model
file or one carrying untrusted types (test_classify.py, test_model.py), a Pushgateway that is
down, refuses or hangs (test_metrics.py), kill -9 with Gemini faults (test_kill_resume.py).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ticketclf.io.writers import AtomicFile

from .conftest import SAMPLES, ticketclf_cmd
from .fake_gemini import Reply
from .leakcheck import scan as scan_for_leaks
from .test_classify import big_csv, read_csv
from .test_kill_resume import (
    answer_for,
    distinct_tickets,
    gemini_subprocess_env,
    stored_keys,
)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """mount("name", size="64k", read_only=False): a fresh tmpfs under tmp_path."""
    mounted: list[Path] = []

    def mount(name: str, size: str = "1m", read_only: bool = False) -> Path:
        target = tmp_path / name
        target.mkdir()
        options = f"size={size},mode=0755" + (",ro" if read_only else "")
        if shutil.which("mount") is None:
            pytest.skip("SKIPPED, NOT TESTED: no mount command to make a small file system")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip("SKIPPED, NOT TESTED: cannot mount a tmpfs (needs root with "
                        f"CAP_SYS_ADMIN): {r.stderr.strip()}")
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", "--lazy", str(target)], check=False)


def json_lines(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def error_lines(stderr: str) -> list[str]:
    """What a person reads: the lines that are not JSON log records."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("{")]


@pytest.mark.parametrize(("name", "size"), [("out.csv", "256k"), ("out.jsonl.gz", "8k")])
def test_a_full_disk_while_writing_exits_73_and_leaves_nothing(cli, tmp_path, tmpfs, name,
                                                                size):
    src = big_csv(tmp_path / "in.csv", 3000)  # ~2 MB of output, ~20 KB gzipped
    disk = tmpfs("disk", size=size)
    r = cli("classify", src, "-o", disk / name, "-q", "--workers", "1", "--batch-size", "200")
    assert r.code == 73, r
    assert error_lines(r.stderr) == [
        f"error: cannot write {disk / name}: No space left on device",
        "  hint: free some space or choose another -o"]
    assert list(disk.iterdir()) == []  # neither output, rejects, nor a temporary


def test_a_file_size_limit_while_writing_exits_73_and_leaves_nothing(tmp_path):
    """RLIMIT_FSIZE (EFBIG) needs no root: the same path as a full disk, on any machine."""
    src = big_csv(tmp_path / "in.csv", 3000)
    out = tmp_path / "out" / "o.csv"
    out.parent.mkdir()
    limited = ("import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
               " resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000));"
               " sys.argv[0] = 'ticketclf'; runpy.run_module('ticketclf', run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", limited, *ticketclf_cmd(
        "classify", src, "-o", out, "-q", "--workers", "1", "--log-level", "WARNING")[3:]],
        capture_output=True, text=True, timeout=120)
    assert r.returncode == 73, r.stderr[-2000:]
    assert error_lines(r.stderr) == [f"error: cannot write {out}: File too large",
                                     "  hint: free some space or choose another -o"]
    assert list(out.parent.iterdir()) == []


def test_a_reader_closing_stdout_early_exits_73_with_one_line(tmp_path):
    """`ticketclf classify big.csv -o - | head`: not an internal error, and no noise."""
    src = big_csv(tmp_path / "in.csv", 3000)
    with subprocess.Popen(ticketclf_cmd("classify", src, "-o", "-", "-q", "--workers", "1",
                                        "--batch-size", "100", "--log-level", "WARNING",
                                        "--rejects", tmp_path / "rejects.jsonl"),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().startswith(b"id,text,category,")
        proc.stdout.close()  # what `head -1` does
        stderr = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 73, stderr
    assert error_lines(stderr) == [
        "error: stdout was closed before all rows were written (the reader stopped early)",
        "  hint: write to a file with -o to keep every row"]


def test_a_read_only_output_directory_exits_73(cli, tmpfs):
    directory = tmpfs("readonly", read_only=True)
    r = cli("classify", SAMPLES / "tickets.csv", "-o", directory / "out.csv", "-q")
    assert r.code == 73, r
    assert error_lines(r.stderr)[0] == \
        f"error: cannot create a file in {directory}: Read-only file system"
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(("fault", "action"), [("read-only", "open"), ("full", "write")])
def test_an_unusable_cache_directory_is_one_warning_and_the_run_goes_on(
        cli, tmp_path, tmpfs, gemini_env, fault, action):
    """A read-only cache cannot even open; a full one fails at its first big write. Either
    way: one warning, every escalated ticket still answered, every row written."""
    src = distinct_tickets(tmp_path / "in.csv", 150)
    cache = tmpfs("cache", size="256k", read_only=fault == "read-only")
    r = cli("classify", src, "-o", tmp_path / "out.csv", "--quiet", "--workers", "1",
            "--llm-threshold", "1.0", "--cache-dir", cache, "--log-format", "json")
    assert r.code == 0, r
    warnings = [rec for rec in json_lines(r.stderr) if rec["level"] == "WARNING"]
    assert [(w["event"], w["action"]) for w in warnings] == [("cache_error", action)]
    rows = read_csv(tmp_path / "out.csv")
    assert len(rows) == 150 and {row["decided_by"] for row in rows} == {"llm"}
    assert gemini_env.count == 150


def test_two_runs_sharing_a_cache_at_once_both_succeed(tmp_path, fake_gemini, cli,
                                                        monkeypatch):
    def slow(text: str) -> dict:
        time.sleep(0.04)  # both runs are still asking while the other one stores answers
        return answer_for(text)

    fake_gemini.answer_for = slow
    src = distinct_tickets(tmp_path / "in.csv", 200)
    env = gemini_subprocess_env(fake_gemini, tmp_path / "cache")
    procs = [subprocess.Popen(ticketclf_cmd(
        "classify", src, "-o", tmp_path / f"run{i}.csv", "--quiet", "--workers", "1",
        "--batch-size", "20", "--llm-threshold", "1.0", "--log-format", "json"),
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in range(2)]
    stderrs = [proc.communicate(timeout=180)[1].decode() for proc in procs]
    for proc, stderr in zip(procs, stderrs, strict=True):
        scan_for_leaks(stderr, "stderr of a run sharing its cache")
        assert proc.returncode == 0, stderr[-2000:]
        assert "cache_error" not in stderr  # neither had to give the cache up
    first, second = (read_csv(tmp_path / f"run{i}.csv") for i in range(2))
    strip = [{k: v for k, v in row.items() if k != "cached"} for row in first]
    assert strip == [{k: v for k, v in row.items() if k != "cached"} for row in second]
    assert {row["decided_by"] for row in first + second} == {"llm"}
    assert 200 <= fake_gemini.count <= 400  # each run asked at most once per ticket
    assert len(stored_keys(tmp_path / "cache")) == 200
    # and what they stored together serves the next run entirely
    monkeypatch.setenv("GEMINI_API_KEY", env["GEMINI_API_KEY"])
    monkeypatch.setenv("TICKETCLF_GEMINI_BASE_URL", fake_gemini.url)
    asked = fake_gemini.count
    r = cli("classify", src, "-o", tmp_path / "run3.csv", "-q", "--workers", "1",
            "--llm-threshold", "1.0", "--cache-dir", tmp_path / "cache")
    assert r.code == 0, r
    assert fake_gemini.count == asked
    assert {row["cached"] for row in read_csv(tmp_path / "run3.csv")} == {"true"}


def test_sigterm_while_gemini_hangs_exits_143_at_once(tmp_path, fake_gemini):
    """Requests in flight are abandoned, not waited for: before the fix the process stayed
    until their timeout (30 s by default), past a container's grace period."""
    fake_gemini.script(*[Reply(delay=60)] * 8)
    env = gemini_subprocess_env(fake_gemini, tmp_path / "cache")
    out = tmp_path / "out.csv"
    with subprocess.Popen(ticketclf_cmd(
            "classify", SAMPLES / "tickets.csv", "-o", out, "--quiet", "--workers", "1",
            "--llm-threshold", "1.0", "--log-format", "json"),
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        try:
            deadline = time.monotonic() + 60
            while fake_gemini.count < 4:  # all four request threads are stuck
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            stderr = proc.communicate(timeout=60)[1].decode()
            took = time.monotonic() - signalled
        finally:
            proc.kill()
    assert proc.returncode == 143, stderr[-2000:]
    assert took < 10, f"exit took {took:.1f} s after SIGTERM"
    assert not out.exists() and not Path(f"{out}.rejects.jsonl").exists()
    assert error_lines(stderr) == ["interrupted: no output written; LLM answers so far are cached"]


def test_a_dead_runs_temporary_is_removed_and_a_live_runs_is_kept(tmp_path):
    """kill -9 leaves a temporary beside the output (no code runs to remove it): the next
    run for the same output removes it, unless a live run still holds it."""
    target = tmp_path / "out.csv"
    dead = tmp_path / ".out.csv.x1y2z3ab.tmp"  # what a killed run leaves: nobody holds it
    dead.write_bytes(b"id,text\r\n1,half a row")
    other = tmp_path / ".other.csv.x1y2z3ab.tmp"  # another output's: not ours to judge
    other.write_bytes(b"")
    with AtomicFile(target) as live:
        assert not dead.exists()
        live.write(b"id\r\n")
        (live_tmp,) = [p for p in tmp_path.iterdir() if p.name.startswith(".out.csv.")]
        with AtomicFile(target) as second:  # a concurrent run for the same output
            second.write(b"id\r\n2\r\n")
        assert live_tmp.exists()
    assert not dead.exists() and other.exists()
    assert target.read_bytes() == b"id\r\n"  # the last to finish wins, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.csv.x1y2z3ab.tmp", "out.csv"]


def test_a_reader_closing_stdout_early_on_a_report_exits_73_not_as_a_bug():
    """`ticketclf predict TEXT | head -1`: rich's broken-pipe exit (1) would say bug."""
    with subprocess.Popen(ticketclf_cmd("predict", "my bill doubled this month", "--explain"),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # before a line is read: the first write fails
        stderr = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 73, stderr
    assert error_lines(stderr) == [
        "error: stdout was closed before all of the output was written (the reader stopped "
        "early)", "  hint: let the reader take all of it, or save it with > FILE"]
