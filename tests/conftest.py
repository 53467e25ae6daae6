"""Shared fixtures: the shipped model, small real input files, and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ticketclf.cli import app

from .services import *  # noqa: F403 - fixtures: pushgateway, prometheus, promtool

# fixtures fake_gemini, gemini_env, fake_openai, openai_env; the session-wide check for leaked
# secrets and ticket text
pytest_plugins = ["tests.fake_gemini", "tests.fake_openai", "tests.leakcheck"]

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
SHIPPED_MODEL = ROOT / "models" / "default"
CORPUS = ROOT / "data" / "telecom"


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return SHIPPED_MODEL


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's settings or keys; the cache lives in the test's tmp dir."""
    for name in list(os.environ):
        if name.startswith("TICKETCLF_") or name.startswith("GEMINI_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TICKETCLF_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def cli() -> Callable[..., CliResult]:
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> CliResult:
        result = runner.invoke(app, [str(a) for a in args], input=input)
        scan_for_leaks(result.stderr, f"stderr of ticketclf {args[0] if args else ''}")
        return CliResult(result.exit_code, result.stdout, result.stderr, result.exception)

    return invoke


class CliResult:
    def __init__(self, code: int, stdout: str, stderr: str, exception: BaseException | None):
        self.code, self.stdout, self.stderr, self.exception = code, stdout, stderr, exception

    def __repr__(self) -> str:
        return f"CliResult(code={self.code}, stderr={self.stderr[-2000:]!r})"


def scan_for_leaks(text: str, where: str) -> None:
    """tests/leakcheck.py's scan (imported late: a plugin must not be imported before pytest
    registers it, or its asserts are not rewritten)."""
    from .leakcheck import scan

    scan(text, where)


def ticketclf_cmd(*args: str) -> list[str]:
    """The installed console script, run as a real subprocess."""
    return [sys.executable, "-m", "ticketclf", *[str(a) for a in args]]


def run_cli(*args: str, input: bytes | None = None, timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(ticketclf_cmd(*args), input=input, capture_output=True,
                            timeout=timeout, env=env)
    scan_for_leaks(result.stderr.decode(errors="replace"), f"stderr of ticketclf {args[0]}")
    return result


def corpus_rows(per_file: int, names: tuple[str, ...] | None = None) -> list[list[str]]:
    """[text, category, sentiment] of the first `per_file` tickets of each hand-written
    category file (all of them, or those named)."""
    import csv

    files = [CORPUS / f"{n}.csv" for n in names] if names else sorted(CORPUS.glob("*.csv"))
    rows = []
    for path in files:
        with open(path, newline="") as f:
            rows += [[r["text"], r["category"], r["sentiment"]]
                     for i, r in enumerate(csv.DictReader(f)) if i < per_file]
    return rows


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    import csv

    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


def lose_a_signal(signum: int) -> None:
    """Send this process `signum` and swallow the Interrupted its handler raises: what C code
    that clears errors does to a handler's exception."""
    import signal

    from ticketclf.errors import Interrupted

    try:
        os.kill(os.getpid(), signum)
        signal.pthread_sigmask(signal.SIG_BLOCK, [])  # a call: the handler runs here
    except Interrupted:
        pass
