"""The real image: built from the Dockerfile by scripts/container-test.sh (buildah, a local
debootstrap base, no registry), run with podman the way the CronJob runs it: UID 10001, a
read-only root, no capabilities, no privilege escalation, a tmpfs cache and a bind-mounted
data directory. The first build takes about a minute and a half; with the base tarball and
the layers cached, seconds."""

from __future__ import annotations

import csv
import json
import os
import select
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from ticketclf.schema import CATEGORIES, RESULT_COLUMN_NAMES, SENTIMENTS

from .conftest import ROOT, SAMPLES

pytestmark = pytest.mark.slow

# What the image adds to its base (issue 13's budget): 360 MB measured on the local Debian 12
# base (128 MB), with the extension modules stripped and the static word table only in the
# package (bench/RESULTS.md).
MAX_ADDED_BYTES = 375_000_000
UID = 10001
BUILD_TIMEOUT = 900  # cold: debootstrap + every wheel from PyPI; warm: seconds
CANNOT_INSTALL = 3  # scripts/container-test.sh: buildah/podman missing and not installable


@dataclass(frozen=True)
class Image:
    tag: str
    size_bytes: int
    base_size_bytes: int
    env: dict[str, str]  # CONTAINERS_CONF: runc and fixed ulimits (DESIGN.md §3)

    def podman(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"image tests cannot run in CI: {reason}")
    pytest.skip(f"SKIPPED, NOT TESTED: the container image tests: {reason}")


@pytest.fixture(scope="module")
def image() -> Image:
    if os.geteuid() != 0:
        _unavailable("building the base needs root (debootstrap, rootful podman); "
                     "run `sudo make test`")
    tag = "localhost/ticketclf:test"
    result = subprocess.run(["bash", str(ROOT / "scripts" / "container-test.sh"), tag],
                            capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    if result.returncode == CANNOT_INSTALL:
        _unavailable(result.stderr.strip())
    assert result.returncode == 0, f"image build failed:\n{result.stderr[-4000:]}"
    info = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    return Image(info["image"], int(info["size_bytes"]), int(info["base_size_bytes"]),
                 {**os.environ, "CONTAINERS_CONF": info["containers_conf"]})


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """The bind-mounted data directory, owned by the container's user like the PVC is."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "tickets.csv").write_bytes((SAMPLES / "tickets.csv").read_bytes())
    for path in (data, data / "tickets.csv"):
        os.chown(path, UID, UID)
    return data


def hardened(data: Path, env: dict[str, str] | None = None, healthcheck: bool = False,
             name: str | None = None) -> list[str]:
    """`podman run` options as deploy/k8s runs the pod: the same user, a read-only root, no
    capabilities, no privilege escalation, a tmpfs cache and the data directory mounted."""
    options = ["--rm", "--network=host", f"--user={UID}:{UID}", "--read-only", "--cap-drop=ALL",
               "--security-opt=no-new-privileges",
               "--tmpfs=/var/cache/ticketclf:rw,size=64m,mode=0700,U", f"--volume={data}:/data"]
    # No systemd here to time the checks: off, or on demand only (`podman healthcheck run`).
    options.append("--health-interval=disable" if healthcheck else "--no-healthcheck")
    if name:
        options.append(f"--name={name}")
    return options + [f"--env={key}={value}" for key, value in (env or {}).items()]


def test_image_adds_at_most_375_mb_to_its_base_is_non_root_and_runs_ticketclf(image):
    added = image.size_bytes - image.base_size_bytes
    assert added <= MAX_ADDED_BYTES, f"the image adds {added / 1e6:.0f} MB to its base"
    result = image.podman("image", "inspect", image.tag)
    assert result.returncode == 0, result.stderr
    inspected = json.loads(result.stdout)[0]
    config = inspected["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["ticketclf"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["TICKETCLF_MODEL"] == "/app/models/default"
    assert env["TICKETCLF_CACHE_DIR"] == "/var/cache/ticketclf" and env["TMPDIR"] == "/tmp"
    assert inspected["Healthcheck"]["Test"] == ["CMD", "ticketclf", "doctor"]


def test_hardened_container_classifies_the_samples_and_pushes_metrics_to_the_host(
        image, data_dir, pushgateway):
    job = f"container-test-{uuid.uuid4().hex[:8]}"
    env = {"TICKETCLF_PUSHGATEWAY_URL": pushgateway.url, "TICKETCLF_JOB_NAME": job}
    result = image.podman("run", *hardened(data_dir, env), image.tag,
                          "classify", "/data/tickets.csv", "-o", "/data/out.csv", "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]

    with open(SAMPLES / "tickets.csv", newline="", encoding="utf-8") as f:
        source = list(csv.DictReader(f))
    out = data_dir / "out.csv"
    with open(out, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == [*source[0].keys(), *RESULT_COLUMN_NAMES]
    assert [r["ticket_id"] for r in rows] == [r["ticket_id"] for r in source]
    assert {r["category"] for r in rows} <= set(CATEGORIES)
    assert {r["sentiment"] for r in rows} <= set(SENTIMENTS)
    assert out.stat().st_uid == UID
    assert (data_dir / "out.csv.rejects.jsonl").exists()

    series = pushgateway.series(job)
    assert series["ticketclf_last_run_success"] == 1
    assert series['ticketclf_last_run_rows{outcome="classified"}'] == len(rows)


def test_image_healthcheck_passes_in_the_hardened_container(image, data_dir):
    name = f"ticketclf-health-{uuid.uuid4().hex[:8]}"
    started = image.podman("run", "--detach", "--entrypoint=sleep",
                           *hardened(data_dir, healthcheck=True, name=name), image.tag, "120")
    assert started.returncode == 0, started.stderr
    try:
        check = image.podman("healthcheck", "run", name)  # the image's HEALTHCHECK, once
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        image.podman("rm", "--force", "--time=0", name)


def test_sigterm_to_pid_1_exits_143_and_leaves_no_partial_output(image, data_dir):
    name = f"ticketclf-term-{uuid.uuid4().hex[:8]}"
    command = ["podman", "run", "--interactive",
               *hardened(data_dir, {"TICKETCLF_LOG_FORMAT": "json"}, name=name), image.tag,
               "classify", "-", "--input-format", "csv", "-o", "/data/partial.csv",
               "--batch-size", "1"]
    with subprocess.Popen(command, env=image.env, stdin=subprocess.PIPE,
                          stderr=subprocess.PIPE) as proc:
        assert proc.stdin is not None and proc.stderr is not None
        # stdin stays open: the run is mid-stream, as a long nightly run would be
        proc.stdin.write(b"id,text\n" + b"".join(b"%d,my bill is wrong again %d\n" % (i, i)
                                                 for i in range(20)))
        proc.stdin.flush()
        wait_for(proc.stderr, b'"run_started"', timeout=60)
        stop = image.podman("kill", "--signal=TERM", name)
        assert stop.returncode == 0, stop.stderr
        code = proc.wait(timeout=60)
        rest = proc.stderr.read().decode(errors="replace")
    assert code == 143, rest
    assert "interrupted" in rest
    # neither the output, nor the rejects file, nor a temp file of either
    assert sorted(os.listdir(data_dir)) == ["tickets.csv"]


def wait_for(stream: IO[bytes], marker: bytes, timeout: float) -> bytes:
    """Read the stream until `marker` shows, without blocking past the deadline."""
    deadline = time.monotonic() + timeout
    seen = b""
    while marker not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {marker!r} within {timeout} s: {seen[-2000:]!r}"
        ready, _, _ = select.select([stream], [], [], left)
        if ready:
            chunk = os.read(stream.fileno(), 65536)
            assert chunk, f"the container ended before {marker!r}: {seen[-2000:]!r}"
            seen += chunk
    return seen
