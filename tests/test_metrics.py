"""Run metrics against a real Pushgateway, and the JSON logs of a run.

Runs use `--llm-threshold 0` and no Gemini key, so nothing is escalated; the assertions hold
whatever the shipped model predicts.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from scipy.spatial.distance import jensenshannon

from ticketclf.metrics import PUSH_TIMEOUT_SECONDS
from ticketclf.model import load_model
from ticketclf.model.store import seal_card
from ticketclf.schema import CATEGORIES, SENTIMENTS

from .conftest import SAMPLES, SHIPPED_MODEL, run_cli, ticketclf_cmd, write_csv
from .services import BASIC_AUTH_PASSWORD, BASIC_AUTH_USER, free_port

with open(SAMPLES / "tickets.csv", encoding="utf-8", newline="") as _f:
    SAMPLE_ROWS = list(csv.DictReader(_f))

# DESIGN.md §2, with the label values every run pushes (at 0 when nothing was counted).
DOCUMENTED_SERIES = {
    "ticketclf_last_success_timestamp_seconds",
    "ticketclf_last_run_timestamp_seconds",
    "ticketclf_last_run_duration_seconds",
    "ticketclf_last_run_success",
    'ticketclf_last_run_rows{outcome="classified"}',
    'ticketclf_last_run_rows{outcome="rejected"}',
    *(f'ticketclf_last_run_category_rows{{category="{c}"}}' for c in CATEGORIES),
    *(f'ticketclf_last_run_sentiment_rows{{sentiment="{s}"}}' for s in SENTIMENTS),
    'ticketclf_last_run_decisions{decided_by="model"}',
    'ticketclf_last_run_decisions{decided_by="llm"}',
    'ticketclf_last_run_cache_lookups{result="hit"}',
    'ticketclf_last_run_cache_lookups{result="miss"}',
    'ticketclf_last_run_llm_requests{status="ok"}',
    'ticketclf_last_run_llm_requests{status="error"}',
    'ticketclf_last_run_llm_tokens{kind="input"}',
    'ticketclf_last_run_llm_tokens{kind="output"}',
    # beyond the contract: per-stage time and the confidence histogram (issue 5)
    *(f'ticketclf_last_run_stage_seconds{{stage="{s}"}}' for s in ("read", "model", "llm",
                                                                   "write")),
    'ticketclf_last_run_confidence_count{head="category"}',
    'ticketclf_last_run_confidence_count{head="sentiment"}',
    "ticketclf_last_run_exit_code",
    "ticketclf_last_run_llm_cost_usd",
    # drift against the model's training data (issue 14)
    *(f'ticketclf_last_run_{family}{{head="{head}"}}' for head in ("category", "sentiment")
      for family in ("label_divergence", "low_confidence_ratio")),
    "ticketclf_last_run_unseen_token_ratio",
    "ticketclf_last_run_unseen_language_ratio",
}
# Label names a pushed sample may carry besides the grouping key: none per pod or per ticket.
METRIC_LABELS = {"outcome", "category", "sentiment", "priority", "decided_by", "result", "status",
                 "kind", "stage", "head", "le", "version", "model_version"}


def unique_job() -> str:
    """Each test pushes to its own group of the shared Pushgateway."""
    return f"test-{uuid.uuid4().hex[:10]}"


def classify_args(out: Path, *extra: object, src: Path = SAMPLES / "tickets.csv") -> list[object]:
    return ["classify", src, "-o", out, "-q", "--llm-threshold", "0", *extra]


def rejecting_csv(path: Path) -> Path:
    """Half the rows have no text: over the default --max-reject-rate, so the run exits 65."""
    rows = [[f"R{i}", "my bill is wrong" if i % 2 else ""] for i in range(20)]
    return write_csv(path, ["id", "text"], rows)


def json_lines(stderr: str) -> list[dict]:
    """The log records; the CLI's one-line error messages are plain text."""
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def warnings(stderr: str) -> list[dict]:
    return [r for r in json_lines(stderr) if r["level"] == "WARNING"]


def test_a_run_pushes_the_documented_series(cli, pushgateway, tmp_path):
    job = unique_job()
    started = time.time()
    r = cli(*classify_args(tmp_path / "out.csv", "--pushgateway", pushgateway.url,
                           "--job-name", job))
    assert r.code == 0, r
    series = pushgateway.series(job)
    assert series.keys() >= DOCUMENTED_SERIES, DOCUMENTED_SERIES - series.keys()

    rows = len(SAMPLE_ROWS)
    assert series['ticketclf_last_run_rows{outcome="classified"}'] == rows
    assert series['ticketclf_last_run_rows{outcome="rejected"}'] == 0
    for family in ("category_rows", "sentiment_rows", "priority_rows", "decisions"):
        assert sum(v for k, v in series.items() if k.startswith(f"ticketclf_last_run_{family}{{"))\
            == rows, family
    assert series['ticketclf_last_run_decisions{decided_by="llm"}'] == 0
    for head in ("category", "sentiment"):
        assert series[f'ticketclf_last_run_confidence_bucket{{head="{head}",le="+Inf"}}'] == rows
        assert 0 < series[f'ticketclf_last_run_confidence_sum{{head="{head}"}}'] <= rows
    assert series["ticketclf_last_run_success"] == 1
    assert series["ticketclf_last_run_exit_code"] == 0
    assert started <= series["ticketclf_last_success_timestamp_seconds"] <= time.time()
    assert series["ticketclf_last_success_timestamp_seconds"] == \
        series["ticketclf_last_run_timestamp_seconds"]
    assert 0 < series["ticketclf_last_run_duration_seconds"] < time.time() - started
    labels = {name for key in series for name in re.findall(r'(\w+)="', key)}
    assert labels <= METRIC_LABELS, labels - METRIC_LABELS  # grouping key: job (+instance) only


def test_a_run_pushes_how_far_its_tickets_are_from_the_training_data(cli, pushgateway, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL, model)
    card = json.loads((model / "card.json").read_text())
    # A sentiment threshold that some sample tickets fall below, so the one used matters.
    card = {**card, "languages": ["en"], "thresholds": {**card["thresholds"], "sentiment": 0.7}}
    (model / "card.json").write_text(json.dumps(seal_card(card)))
    job, out = unique_job(), tmp_path / "out.csv"
    r = cli(*classify_args(out, "--model", model, "--pushgateway", pushgateway.url,
                           "--job-name", job))
    assert r.code == 0, r
    series = pushgateway.series(job)
    with open(out, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(SAMPLE_ROWS)
    for head in ("category", "sentiment"):
        # the run's final label mix against the card's cross-validation supports
        supports = {k: v["support"] for k, v in card["metrics"][head]["per_class"].items()}
        mix = Counter(row[head] for row in rows)
        labels = sorted(supports.keys() | mix.keys())
        expected = jensenshannon([mix[k] for k in labels], [supports.get(k, 0) for k in labels],
                                 base=2) ** 2
        pushed = series[f'ticketclf_last_run_label_divergence{{head="{head}"}}']
        assert pushed == pytest.approx(expected, abs=1e-9)
        # the card's threshold, not --llm-threshold 0: the local model's own doubt
        low = sum(float(row[f"{head}_confidence"]) < card["thresholds"][head] for row in rows)
        assert series[f'ticketclf_last_run_low_confidence_ratio{{head="{head}"}}'] == \
            pytest.approx(low / len(rows))
        assert head != "sentiment" or low > 0  # so the threshold used matters here
    # word tokens of every 4th ticket, split by the fitted word analyzer, not in its vocabulary
    word = dict(load_model(model).vectorizer.transformer_list)["word"]
    analyzer = word.build_analyzer()
    tokens = [g for row in SAMPLE_ROWS[::4] for g in analyzer(row["text"]) if " " not in g]
    unseen = sum(token not in word.vocabulary_ for token in tokens) / len(tokens)
    assert series["ticketclf_last_run_unseen_token_ratio"] == pytest.approx(unseen)
    assert 0 < unseen < 0.5
    # the card lists its languages; "und" (too short to tell) counts as seen
    foreign = sum(row["language"] not in ("en", "und") for row in rows)
    assert series["ticketclf_last_run_unseen_language_ratio"] == pytest.approx(
        foreign / len(rows))


def test_a_sharded_run_is_grouped_by_job_and_shard(cli, pushgateway, tmp_path):
    job = unique_job()
    r = cli(*classify_args(tmp_path / "out.csv", "--shard", "1/3",
                           "--pushgateway", pushgateway.url, "--job-name", job))
    assert r.code == 0, r
    series = pushgateway.series(job)
    assert series and all('shard="1/3"' in key for key in series)
    classified = series['ticketclf_last_run_rows{outcome="classified",shard="1/3"}']
    assert 0 < classified < len(SAMPLE_ROWS)


def test_a_failed_run_leaves_the_last_success_gauge_unchanged(cli, pushgateway, tmp_path):
    job = unique_job()
    push = ("--pushgateway", pushgateway.url, "--job-name", job)
    assert cli(*classify_args(tmp_path / "ok.csv", *push)).code == 0
    good = pushgateway.series(job)

    r = cli(*classify_args(tmp_path / "bad.csv", *push, src=rejecting_csv(tmp_path / "in.csv")))
    assert r.code == 65, r
    bad = pushgateway.series(job)
    assert bad["ticketclf_last_success_timestamp_seconds"] == \
        good["ticketclf_last_success_timestamp_seconds"]
    assert bad["ticketclf_last_run_timestamp_seconds"] > \
        good["ticketclf_last_run_timestamp_seconds"]
    assert bad["ticketclf_last_run_success"] == 0
    assert bad["ticketclf_last_run_exit_code"] == 65
    # the failed run's own counts replace the good run's, label by label
    assert bad['ticketclf_last_run_rows{outcome="rejected"}'] == 10
    assert bad['ticketclf_last_run_rows{outcome="classified"}'] == 10
    assert sum(v for k, v in bad.items() if k.startswith("ticketclf_last_run_category_rows")) == 10


def test_a_run_that_fails_before_classifying_still_pushes(cli, pushgateway, tmp_path):
    job = unique_job()
    r = cli(*classify_args(tmp_path / "out.csv", "--pushgateway", pushgateway.url,
                           "--job-name", job, src=tmp_path / "missing.csv"))
    assert r.code == 66
    series = pushgateway.series(job)
    assert series["ticketclf_last_run_exit_code"] == 66
    assert series["ticketclf_last_run_success"] == 0
    assert "ticketclf_last_success_timestamp_seconds" not in series


def test_a_dry_run_pushes_nothing(cli, pushgateway, tmp_path):
    job = unique_job()
    r = cli(*classify_args(tmp_path / "out.csv", "--dry-run", "--pushgateway", pushgateway.url,
                           "--job-name", job))
    assert r.code == 0, r
    assert pushgateway.series(job) == {}


def test_sigterm_pushes_exit_code_143_and_keeps_the_last_success(cli, pushgateway, tmp_path):
    job = unique_job()
    push = ("--pushgateway", pushgateway.url, "--job-name", job)
    assert cli(*classify_args(tmp_path / "ok.csv", *push)).code == 0
    good = pushgateway.series(job)

    texts = [row["text"] for row in SAMPLE_ROWS]
    src = write_csv(tmp_path / "big.csv", ["id", "text"],
                    [[f"B{i}", texts[i % len(texts)]] for i in range(100_000)])
    command = ticketclf_cmd(*map(str, classify_args(
        tmp_path / "out.csv", *push, "--batch-size", "500", "--log-format", "json", src=src)))
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        try:
            _wait_for(lambda: any(p.name.startswith(".out.csv.") for p in tmp_path.iterdir()))
            proc.send_signal(signal.SIGTERM)
            stderr = proc.communicate(timeout=30)[1].decode()
        finally:
            proc.kill()  # only if the test failed before the run ended
    assert proc.returncode == 143, stderr[-2000:]
    series = pushgateway.series(job)
    assert series["ticketclf_last_run_exit_code"] == 143
    assert series["ticketclf_last_run_success"] == 0
    assert series["ticketclf_last_success_timestamp_seconds"] == \
        good["ticketclf_last_success_timestamp_seconds"]
    assert [r["event"] for r in json_lines(stderr) if r.get("event", "").startswith("metrics")] \
        == ["metrics_pushed"]


def _wait_for(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def hanging_gateway() -> Iterator[str]:
    """A TCP server that accepts connections and never answers: a Pushgateway that hangs."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


@pytest.mark.parametrize(("gateway", "reason"), [
    ("nothing listening", "Connection refused"),
    ("wrong path", "HTTP 404"),
    ("needs credentials", "HTTP 401"),
    ("hangs", "timed out"),
])
@pytest.mark.parametrize(("bad_input", "code"), [(False, 0), (True, 65)])
def test_a_failing_gateway_logs_one_warning_and_keeps_the_exit_code(
        request, cli, pushgateway, tmp_path, gateway, reason, bad_input, code):
    url = {
        "nothing listening": lambda: f"http://127.0.0.1:{free_port()}",
        "wrong path": lambda: f"{pushgateway.url}/no/such/prefix",
        "needs credentials": lambda: request.getfixturevalue("pushgateway_with_basic_auth").url,
        "hangs": lambda: request.getfixturevalue("hanging_gateway"),
    }[gateway]()
    src = rejecting_csv(tmp_path / "in.csv") if bad_input else SAMPLES / "tickets.csv"
    started = time.monotonic()
    r = cli(*classify_args(tmp_path / "out.csv", "--pushgateway", url, "--log-format", "json",
                           src=src))
    assert r.code == code, r
    # a push is bounded by its timeout (a few seconds of classifying besides)
    assert time.monotonic() - started < PUSH_TIMEOUT_SECONDS + 20
    (warning,) = warnings(r.stderr)
    assert warning["event"] == "metrics_push_failed"
    assert reason in warning["error"]
    assert warning["logger"] == "ticketclf.metrics"


@pytest.mark.parametrize(("env", "reason"), [
    ({"TICKETCLF_PUSHGATEWAY_USERNAME": "ops"}, "TICKETCLF_PUSHGATEWAY_PASSWORD is not"),
    ({"TICKETCLF_PUSHGATEWAY_TOKEN_FILE": "/nonexistent/token"}, "cannot read"),
])
def test_broken_push_credentials_are_one_warning_not_a_failed_run(cli, pushgateway, tmp_path,
                                                                  monkeypatch, env, reason):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    r = cli(*classify_args(tmp_path / "out.csv", "--pushgateway", pushgateway.url,
                           "--log-format", "json"))
    assert r.code == 0, r
    (warning,) = warnings(r.stderr)
    assert reason in warning["error"]


def test_basic_auth_comes_from_a_mounted_password_file(cli, pushgateway_with_basic_auth,
                                                       tmp_path, monkeypatch):
    secret_file = tmp_path / "password"
    secret_file.write_text(BASIC_AUTH_PASSWORD + "\n")  # as mounted secrets often end
    monkeypatch.setenv("TICKETCLF_PUSHGATEWAY_USERNAME", BASIC_AUTH_USER)
    monkeypatch.setenv("TICKETCLF_PUSHGATEWAY_PASSWORD_FILE", str(secret_file))
    job = unique_job()
    r = cli(*classify_args(tmp_path / "out.csv", "--pushgateway", pushgateway_with_basic_auth.url,
                           "--job-name", job, "--log-format", "json"))
    assert r.code == 0, r
    assert not warnings(r.stderr)
    assert pushgateway_with_basic_auth.series(job)["ticketclf_last_run_success"] == 1
    assert BASIC_AUTH_PASSWORD not in r.stderr + r.stdout


@pytest.fixture
def recording_gateway() -> Iterator[tuple[str, list[tuple[str, str, str | None]]]]:
    """A stand-in gateway that accepts any push and records (method, path, Authorization)."""
    seen: list[tuple[str, str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.command, self.path, self.headers.get("Authorization")))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_bearer_token_from_a_mounted_file_is_sent(cli, recording_gateway, tmp_path,
                                                    monkeypatch):
    url, seen = recording_gateway
    token = f"token-{uuid.uuid4().hex}"
    (tmp_path / "token").write_text(token)
    monkeypatch.setenv("TICKETCLF_PUSHGATEWAY_TOKEN_FILE", str(tmp_path / "token"))
    r = cli(*classify_args(tmp_path / "out.csv", "--pushgateway", url, "--job-name", "nightly",
                           "--log-format", "json"))
    assert r.code == 0, r
    assert seen == [("POST", "/metrics/job/nightly", f"Bearer {token}")]
    assert token not in r.stderr


def test_json_logs_carry_the_run_id_and_no_ticket_text_or_key(pushgateway, tmp_path):
    key, token = f"AIza-{uuid.uuid4().hex}", f"tok-{uuid.uuid4().hex}"
    env = {**os.environ, "TICKETCLF_LOG_FORMAT": "json", "GEMINI_API_KEY": key,
           "TICKETCLF_PUSHGATEWAY_TOKEN": token, "TICKETCLF_PUSHGATEWAY_URL": pushgateway.url,
           "TICKETCLF_JOB_NAME": unique_job()}
    r = run_cli(*map(str, classify_args(tmp_path / "out.csv")), env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    stderr = r.stderr.decode()
    lines = stderr.splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert {"run_started", "run_finished", "metrics_pushed"} <= {r.get("event") for r in records}
    for record in records:
        assert {"timestamp", "level", "logger", "message", "run_id"} <= record.keys()
    assert len({record["run_id"] for record in records}) == 1
    assert key not in stderr and token not in stderr
    for row in SAMPLE_ROWS:  # no ticket text: not the whole text, nor any line of it
        for fragment in [row["text"], *row["text"].splitlines()]:
            if len(fragment.strip()) >= 12:
                assert fragment.strip() not in stderr, row["ticket_id"]


def test_log_level_from_the_environment_silences_info(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("TICKETCLF_LOG_LEVEL", "warning")
    r = cli(*classify_args(tmp_path / "out.csv", "--log-format", "json"))
    assert r.code == 0, r
    assert json_lines(r.stderr) == []


def test_log_options_before_the_command_apply_to_it(cli, tmp_path):
    r = cli("--log-format", "console", "--log-level", "WARNING",
            *classify_args(tmp_path / "out.csv", "--pushgateway", f"127.0.0.1:{free_port()}"))
    assert r.code == 0, r
    (line,) = r.stderr.splitlines()
    assert "WARNING" in line and "metrics push failed" in line and not line.startswith("{")


def test_a_bad_log_setting_in_the_environment_is_a_usage_error_for_any_command(cli, monkeypatch):
    monkeypatch.setenv("TICKETCLF_LOG_FORMAT", "xml")
    r = cli("doctor")
    assert r.code == 2 and "TICKETCLF_LOG_FORMAT" in r.stderr


def test_doctor_reports_whether_the_pushgateway_answers(cli, pushgateway):
    r = cli("doctor", "--pushgateway", pushgateway.url)
    assert r.code == 0, r
    assert f"pushgateway ok: {pushgateway.url}" in r.stdout
    assert "model ok" in r.stdout
    dead = f"http://127.0.0.1:{free_port()}"
    r = cli("doctor", "--pushgateway", dead)
    assert r.code == 78
    assert f"pushgateway {dead} unreachable" in r.stderr and "Connection refused" in r.stderr
