"""Real Prometheus and Pushgateway for the tests (Debian's binaries), on 127.0.0.1 with free
ports and temp dirs, each started once per session. Ports are free ones, never the defaults,
so daemons the Debian packages may have started do not get in the way.

A missing binary fails the session when CI is set, and otherwise skips with a loud reason:
scripts/test-deps.sh (`make test`) installs them.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

# What tests/conftest.py imports: the fixtures.
__all__ = ["prometheus", "promtool", "pushgateway", "pushgateway_with_basic_auth"]

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DEPLOY = ROOT / "deploy" / "prometheus"
START_TIMEOUT = 60.0

# Basic-auth user of the `pushgateway_with_basic_auth` fixture; the hash is bcrypt (cost 4,
# fast) of the password, made once with `bcrypt.hashpw(password, bcrypt.gensalt(4))`.
BASIC_AUTH_USER = "ticketclf-test"
BASIC_AUTH_PASSWORD = "test-push-password"
BASIC_AUTH_BCRYPT = "$2b$04$4KiSIX8UGO.PoXkqb69KweD86f64584RKKWLKpJ5Fhh51sLxg/Xnm"


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = (f"{name} is not installed; the monitoring tests need Debian's prometheus and "
                   "prometheus-pushgateway: run scripts/test-deps.sh (or make test)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(f"SKIPPED, NOT TESTED: {message}")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 5) -> bytes:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return bytes(response.read())


@dataclass
class Pushgateway:
    url: str
    headers: dict[str, str]

    @property
    def address(self) -> str:
        return self.url.removeprefix("http://")

    def series(self, job: str) -> dict[str, float]:
        """The samples of one job's groups, keyed `name{label="value",...}` (sorted labels,
        without the grouping labels job and instance that every sample carries)."""
        text = http_get(f"{self.url}/metrics", self.headers).decode()
        found = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.labels.get("job") != job:
                    continue
                labels = {k: v for k, v in sample.labels.items() if k not in ("job", "instance")}
                inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
                found[f"{sample.name}{{{inner}}}" if inner else sample.name] = sample.value
        return found


@dataclass
class Prometheus:
    url: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result; a PromQL error fails the test with Prometheus' message."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        try:
            body = json.loads(http_get(url))
        except urllib.error.HTTPError as exc:  # 400: the expression does not parse
            body = json.loads(exc.read())
        assert body["status"] == "success", f"{expr}: {body.get('error')}"
        return list(body["data"]["result"])

    def wait_for(self, expr: str, timeout: float = 30) -> list[dict[str, Any]]:
        """Poll until the query returns data (Prometheus scrapes every second here)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result or time.monotonic() > deadline:
                return result
            time.sleep(0.25)

    def get(self, path: str) -> Any:
        return json.loads(http_get(f"{self.url}{path}"))["data"]


def _start(command: list[str], ready_url: str, log: Path,
           headers: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a daemon and poll its readiness endpoint; fail with its log if it never answers."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            http_get(ready_url, headers, timeout=1)
            return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            pytest.fail(f"{command[0]} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _run_pushgateway(workdir: Path, *extra: str,
                     headers: dict[str, str] | None = None) -> Iterator[Pushgateway]:
    address = f"127.0.0.1:{free_port()}"
    url = f"http://{address}"
    proc = _start([binary("prometheus-pushgateway"), f"--web.listen-address={address}",
                   f"--persistence.file={workdir / 'pushgateway.db'}", *extra],
                  f"{url}/-/ready", workdir / "pushgateway.log", headers)
    try:
        yield Pushgateway(url, headers or {})
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushgateway]:
    yield from _run_pushgateway(tmp_path_factory.mktemp("pushgateway"))


@pytest.fixture(scope="session")
def pushgateway_with_basic_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushgateway]:
    """A Pushgateway that answers only BASIC_AUTH_USER / BASIC_AUTH_PASSWORD (its web config)."""
    workdir = tmp_path_factory.mktemp("pushgateway-auth")
    web_config = workdir / "web.yml"
    users = {BASIC_AUTH_USER: BASIC_AUTH_BCRYPT}
    web_config.write_text(yaml.safe_dump({"basic_auth_users": users}))
    credentials = base64.b64encode(f"{BASIC_AUTH_USER}:{BASIC_AUTH_PASSWORD}".encode()).decode()
    yield from _run_pushgateway(workdir, f"--web.config.file={web_config}",
                                headers={"Authorization": f"Basic {credentials}"})


@pytest.fixture(scope="session")
def prometheus(pushgateway: Pushgateway,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """deploy/prometheus/prometheus.yml and its rules, scraping the test Pushgateway every
    second and evaluating the rules every second."""
    workdir = tmp_path_factory.mktemp("prometheus")
    config = yaml.safe_load((PROMETHEUS_DEPLOY / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_DEPLOY / pattern) for pattern in config["rule_files"]]
    for scrape in config["scrape_configs"]:
        scrape["static_configs"] = [{"targets": [pushgateway.address]}]
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    address = f"127.0.0.1:{free_port()}"
    url = f"http://{address}"
    proc = _start([binary("prometheus"), f"--config.file={workdir / 'prometheus.yml'}",
                   f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address={address}"],
                  f"{url}/-/ready", workdir / "prometheus.log")
    try:
        yield Prometheus(url)
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def promtool() -> str:
    return binary("promtool")
