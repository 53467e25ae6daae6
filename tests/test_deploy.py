"""deploy/k8s, the Dockerfile and the CI workflow, checked offline with the real tools:
every kustomization renders (`kubectl kustomize`) and passes `kubernetes-validate --strict`;
every pod template meets the Pod Security Standard "restricted"; the container args and
settings are parsed by the real Typer app, so the manifests cannot drift from the CLI;
hadolint passes the Dockerfile and actionlint the workflow."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
import yaml

from ticketclf.cli import app
from ticketclf.errors import ExitCode
from ticketclf.runner import Shard

from .conftest import ROOT

K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATIONS = {
    "base": K8S / "base",
    **{p.name: p for p in sorted((K8S / "overlays").iterdir())
       if (p / "kustomization.yaml").exists()},
}
# The newest Kubernetes that kubernetes-validate knows, and the oldest the manifests support
# (podFailurePolicy is GA from 1.31).
K8S_VERSIONS = ("1.37.0", "1.31.0")
WORKLOADS = {"CronJob", "Job", "Pod", "Deployment", "StatefulSet", "DaemonSet"}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret"}
UNRETRIABLE = {ExitCode.USAGE, ExitCode.DATA, ExitCode.NO_INPUT, ExitCode.CONFIG}
INDEX_ANNOTATION = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
# secrets-store.csi.x-k8s.io/v1 SecretProviderClass, transcribed from the driver's CRD (no
# schema for it ships with kubernetes-validate), strict like --strict.
SECRET_PROVIDER_CLASS_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "secrets-store.csi.x-k8s.io/v1"},
        "kind": {"const": "SecretProviderClass"},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "spec": {
            "type": "object",
            "required": ["provider", "parameters"],
            "additionalProperties": False,
            "properties": {
                "provider": {"enum": ["azure", "aws", "gcp", "vault"]},
                "parameters": {"type": "object", "additionalProperties": {"type": "string"}},
                "secretObjects": {"type": "array", "items": {"type": "object"}},
            },
        },
    },
}


def tool(name: str) -> str:
    """A linter from the venv (the dev extra) or PATH; missing fails in CI, else skips loudly."""
    search = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    found = shutil.which(name, path=search)
    if found is None:
        message = f"{name} is not installed (pip install -e '.[dev]'; kubectl: see .ci/run)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(f"SKIPPED, NOT TESTED: {message}")
    return found


def run(*command: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=cwd)


_rendered: dict[str, str] = {}


def render(name: str) -> str:
    if name not in _rendered:
        result = run(tool("kubectl"), "kustomize", str(KUSTOMIZATIONS[name]))
        assert result.returncode == 0, result.stderr
        _rendered[name] = result.stdout
    return _rendered[name]


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(render(name)) if d]


def pod_templates(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, pod spec) for every workload in the documents."""
    for doc in docs:
        kind = doc["kind"]
        if kind not in WORKLOADS:
            continue
        spec = doc["spec"]
        if kind == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        yield doc, spec if kind == "Pod" else spec["template"]["spec"]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def unretriable(pod: dict[str, Any]) -> set[int]:
    """Exit codes retrying cannot fix, for the workload's command; learn's "not promoted"
    (the same inputs give the same verdict) among them."""
    codes = {int(c) for c in UNRETRIABLE}
    return codes | {int(ExitCode.NOT_PROMOTED)} if pod["containers"][0]["args"][0] == "learn" \
        else codes


def config_maps(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}


def completion_indexes(workload: dict[str, Any]) -> list[int | None]:
    spec = workload["spec"]
    if workload["kind"] == "Job" and spec.get("completionMode") == "Indexed":
        return list(range(spec["completions"]))
    return [None]


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(value: str, env: dict[str, str]) -> str:
    """The kubelet's $(VAR) expansion: defined names are replaced, others left, $$ escapes."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return _VAR.sub(sub, value)


def container_env(container: dict[str, Any], maps: dict[str, dict[str, str]],
                  index: int | None) -> dict[str, str]:
    """The environment the kubelet gives the container: envFrom, then env in order (each value
    expanded with what is defined before it), plus JOB_COMPLETION_INDEX in an Indexed Job."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        assert name in maps, f"envFrom names ConfigMap {name!r}, which is not in the manifests"
        env.update(maps[name])
    if index is not None:
        env["JOB_COMPLETION_INDEX"] = str(index)
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = expand(var["value"], env)
        elif var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == INDEX_ANNOTATION:
            assert index is not None, f"{var['name']}: a completion index outside an Indexed Job"
            env[var["name"]] = str(index)
        else:
            pytest.fail(f"env {var['name']}: a source this test does not know: {var}")
    return env


def parse_cli(args: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse like `ticketclf ARGS` would: the real command tree, no resilient parsing."""
    group = typer.main.get_command(app)
    parent = typer.Context(group, info_name="ticketclf")
    name, *rest = args
    command = group.get_command(parent, name)
    assert command is not None, f"ticketclf has no command {name!r}"
    ctx = command.make_context(name, rest, parent=parent, resilient_parsing=False)
    return name, ctx.params


@pytest.fixture(params=sorted(KUSTOMIZATIONS))
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --- rendering and schemas -----------------------------------------------------------------

def test_every_kustomization_renders_and_passes_strict_schema_validation(tmp_path):
    validate = tool("kubernetes-validate")
    files = []
    for name in KUSTOMIZATIONS:
        path = tmp_path / f"{name}.yaml"
        path.write_text(render(name))
        files.append(str(path))
    for version in K8S_VERSIONS:
        result = run(validate, "--strict", "--kubernetes-version", version, *files)
        assert result.returncode == 0, result.stdout + result.stderr
        passed = result.stdout.count(" passed for resource ")
        assert passed == sum(1 for n in KUSTOMIZATIONS for d in documents(n)
                             if d["kind"] != "SecretProviderClass")
        unknown = [line for line in (result.stdout + result.stderr).splitlines()
                   if "Couldn't find schema" in line and "SecretProviderClass" not in line]
        assert not unknown, "resources no schema checked:\n" + "\n".join(unknown)


def test_secret_provider_classes_match_the_crd_schema():
    import jsonschema  # comes with kubernetes-validate (the dev extra)

    classes = [d for n in KUSTOMIZATIONS for d in documents(n)
               if d["kind"] == "SecretProviderClass"]
    assert {c["spec"]["provider"] for c in classes} == {"azure", "aws"}
    for spc in classes:
        jsonschema.validate(spc, SECRET_PROVIDER_CLASS_SCHEMA)


# --- pod security ---------------------------------------------------------------------------

def test_pod_templates_meet_the_restricted_pod_security_standard(overlay):
    docs = documents(overlay)
    templates = list(pod_templates(docs))
    assert templates, f"{overlay} has no workload"
    for workload, pod in templates:
        where = f"{overlay}: {workload['kind']}/{workload['metadata']['name']}"
        psc = pod.get("securityContext", {})
        assert psc.get("runAsNonRoot") is True, where
        assert psc.get("runAsUser") == 10001 and psc.get("runAsGroup") == 10001, where
        assert psc.get("fsGroup") == 10001, where
        assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(flag), f"{where}: {flag}"
        assert pod.get("automountServiceAccountToken") is False, where
        for volume in pod.get("volumes", []):
            kinds = set(volume) - {"name"}
            assert kinds <= RESTRICTED_VOLUMES, f"{where}: volume {volume['name']} is {kinds}"
        for c in pod.get("initContainers", []) + pod["containers"]:
            csc = c.get("securityContext", {})
            at = f"{where} container {c['name']}"
            assert csc.get("allowPrivilegeEscalation") is False, at
            assert csc.get("readOnlyRootFilesystem") is True, at
            assert not csc.get("privileged"), at
            assert csc.get("runAsNonRoot", True) is True and csc.get("runAsUser", 10001) != 0, at
            assert csc.get("capabilities", {}).get("drop") == ["ALL"], at
            assert not csc.get("capabilities", {}).get("add"), at
            assert csc.get("seccompProfile", {}).get("type", "RuntimeDefault") == "RuntimeDefault"
            assert not any("hostPort" in p for p in c.get("ports", [])), at
            resources = c.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), at
            assert "memory" in resources.get("limits", {}), at
            assert ":latest" not in c["image"] and ":" in c["image"], f"{at}: pin the image tag"


def test_namespace_enforces_restricted_and_the_service_account_has_no_token(overlay):
    docs = documents(overlay)
    labels = one(docs, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    account = one(docs, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    for _, pod in pod_templates(docs):
        assert pod["serviceAccountName"] == account["metadata"]["name"]


# --- the run policy -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["ticketclf", "ticketclf-learn"])
def test_cronjob_runs_nightly_once_at_a_time_and_fails_fast_on_unretriable_exit_codes(name):
    cron = named(documents("base"), "CronJob", name)
    spec = cron["spec"]
    assert spec["schedule"] and spec["timeZone"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] > 0
    assert spec["successfulJobsHistoryLimit"] >= 1 and spec["failedJobsHistoryLimit"] >= 1
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] >= 1 and job["activeDeadlineSeconds"] > 0
    assert job["ttlSecondsAfterFinished"] > 0
    assert job["template"]["spec"]["restartPolicy"] == "Never"


def test_pod_failure_policy_fails_the_job_on_exactly_the_exit_codes_retrying_cannot_fix(overlay):
    for workload, pod in pod_templates(documents(overlay)):
        job = workload["spec"]["jobTemplate"]["spec"] if workload["kind"] == "CronJob" \
            else workload["spec"]
        rules = job["podFailurePolicy"]["rules"]
        fail = [r for r in rules if r["action"] == "FailJob"]
        assert len(fail) == 1
        on_exit = fail[0]["onExitCodes"]
        assert on_exit["operator"] == "In"
        assert set(on_exit["values"]) == unretriable(pod)
        assert on_exit["containerName"] in {c["name"] for c in pod["containers"]}


# --- the manifests against the CLI ----------------------------------------------------------

def test_container_args_and_settings_parse_with_the_real_cli(overlay, monkeypatch):
    docs = documents(overlay)
    maps = config_maps(docs)
    for workload, pod in pod_templates(docs):
        for container in pod["containers"]:
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            for index in completion_indexes(workload):
                env = container_env(container, maps, index)
                for name, value in env.items():  # options with an envvar read these
                    monkeypatch.setenv(name, value)
                for init in pod.get("initContainers", []):  # promote, review: real args too
                    parse_cli([expand(a, env) for a in init["args"]])
                args = [expand(a, env) for a in container["args"]]
                command, params = parse_cli(args)
                if command == "learn":
                    for path in (str(params["models_dir"]), env["TICKETCLF_CACHE_DIR"]):
                        mount = _under(path + "/", mounts)
                        assert mount is not None and not mount.get("readOnly"), path
                    assert all(_under(p, mounts) for p in params["labels"])
                    continue
                assert command == "classify"
                for path in params["inputs"]:
                    assert _under(path, mounts), f"{path} is on no volume"
                for path in (params["output"], env["TICKETCLF_CACHE_DIR"]):
                    mount = _under(path, mounts)  # the root filesystem is read-only
                    assert mount is not None and not mount.get("readOnly"), path
                key_files = [env[n] for n in ("GEMINI_API_KEY_FILE", "OPENAI_API_KEY_FILE")
                             if n in env]
                if env.get("TICKETCLF_LLM_BACKEND", "gemini") == "gemini":
                    assert key_files, "gemini needs its key"
                for key_file in key_files:
                    assert _under(key_file, mounts), "the key file is on no volume"
                if index is not None:
                    shard = Shard.parse(params["shard"])
                    assert shard == Shard(index, workload["spec"]["completions"])
                cpu = container["resources"]["limits"]["cpu"]
                assert params["workers"] <= int(cpu), "more workers than CPUs in the limit"


def _under(path: str, mounts: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    return next((m for p, m in mounts.items() if path.startswith(p.rstrip("/") + "/")), None)


def test_settings_in_the_manifests_are_ones_the_package_reads(overlay):
    source = "\n".join(p.read_text() for p in (ROOT / "ticketclf").rglob("*.py"))
    docs = documents(overlay)
    names = {n for data in config_maps(docs).values() for n in data}
    names |= {v["name"] for _, pod in pod_templates(docs) for c in pod["containers"]
              for v in c.get("env", [])}
    settings = {n for n in names if n.startswith(("TICKETCLF_", "GEMINI_"))}
    assert settings
    unknown = {n for n in settings if n not in source}
    assert not unknown, f"no code reads {sorted(unknown)}"


def test_sharded_overlay_gives_every_index_its_own_shard_output_and_cache():
    docs = documents("sharded")
    assert not [d for d in docs if d["kind"] == "CronJob"]
    job = one(docs, "Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert 1 <= spec["parallelism"] <= spec["completions"]
    container = spec["template"]["spec"]["containers"][0]
    seen: dict[str, set[str]] = {"shard": set(), "output": set(), "cache": set()}
    for index in completion_indexes(job):
        env = container_env(container, config_maps(docs), index)
        params = parse_cli([expand(a, env) for a in container["args"]])[1]
        seen["shard"].add(params["shard"])
        seen["output"].add(params["output"])
        seen["cache"].add(env["TICKETCLF_CACHE_DIR"])
    for what, values in seen.items():
        assert len(values) == spec["completions"], f"each index needs its own {what}: {values}"
    claims = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    assert claims and all(c["spec"]["accessModes"] == ["ReadWriteMany"] for c in claims)


def test_secret_store_overlays_put_the_key_where_gemini_api_key_file_points():
    for overlay in ("azure-key-vault", "aws-secrets-manager"):
        docs = documents(overlay)
        spc = one(docs, "SecretProviderClass")
        for workload, pod in pod_templates(docs):
            if workload["metadata"]["name"] == "ticketclf-learn":
                continue  # learns from the cache: no key, no LLM
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert not any("secret" in v for v in volumes.values()), "a Secret volume is left"
            container = pod["containers"][0]
            env = container_env(container, config_maps(docs), None)
            key_file = Path(env["GEMINI_API_KEY_FILE"])
            mount = next(m for m in container["volumeMounts"]
                         if m["mountPath"] == str(key_file.parent))
            csi = volumes[mount["name"]]["csi"]
            assert csi["driver"] == "secrets-store.csi.k8s.io"
            assert csi["volumeAttributes"]["secretProviderClass"] == spc["metadata"]["name"]
            assert spc["metadata"]["namespace"] == \
                named(docs, "CronJob", "ticketclf")["metadata"]["namespace"]
            assert key_file.name in _provided_files(spc)


def _provided_files(spc: dict[str, Any]) -> set[str]:
    """The file names a SecretProviderClass mounts: objectAlias, else objectName."""
    objects = yaml.safe_load(spc["spec"]["parameters"]["objects"])
    if isinstance(objects, dict):  # azure: {array: [YAML strings]}
        objects = [yaml.safe_load(o) for o in objects["array"]]
    return {o.get("objectAlias") or o["objectName"] for o in objects}


def test_network_policy_allows_no_ingress_and_egress_only_to_dns_the_llm_and_the_pushgateway(
        overlay):
    docs = documents(overlay)
    policy = one(docs, "NetworkPolicy")["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    assert not policy.get("ingress")
    ports = {(p["protocol"], p["port"]) for rule in policy["egress"] for p in rule["ports"]}
    gateway = next(v for v in config_maps(docs)["ticketclf-settings"].items()
                   if v[0] == "TICKETCLF_PUSHGATEWAY_URL")[1]
    gateway_port = int(gateway.rsplit(":", 1)[1].split("/")[0])
    # the LLM: Gemini over HTTPS, or the in-cluster server's port
    llm_url = config_maps(docs)["ticketclf-settings"].get("TICKETCLF_LLM_BASE_URL")
    llm_port = int(llm_url.rsplit(":", 1)[1].split("/")[0]) if llm_url else 443
    assert ports == {("UDP", 53), ("TCP", 53), ("TCP", llm_port), ("TCP", gateway_port)}
    selector = policy["podSelector"]["matchLabels"]
    for workload, _ in pod_templates(docs):
        template = workload["spec"]["jobTemplate"]["spec"]["template"] \
            if workload["kind"] == "CronJob" else workload["spec"]["template"]
        assert selector.items() <= template["metadata"]["labels"].items()


# --- Dockerfile and workflow -----------------------------------------------------------------

def test_dockerfile_passes_hadolint():
    result = run(tool("hadolint"), "--no-color", "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_scripts_pass_shellcheck():
    result = run(tool("shellcheck"), "scripts/container-test.sh")
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_passes_actionlint():
    workflows = sorted(str(p) for p in (ROOT / ".github" / "workflows").glob("*.y*ml"))
    assert workflows
    result = run(tool("actionlint"), "-no-color", *workflows)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_tests_pull_requests_and_pushes_version_tagged_images_to_ghcr():
    flow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    triggers = flow[True]  # YAML 1.1 reads the key `on` as True
    assert "pull_request" in triggers and triggers["push"]["tags"]
    steps = flow["jobs"]["test"]["steps"]
    assert any("make test" in s.get("run", "") for s in steps)
    assert any("make lint" in s.get("run", "") for s in steps)
    image = flow["jobs"]["image"]
    assert image["needs"] == "test" and "refs/tags/v" in image["if"]
    assert image["permissions"]["packages"] == "write"
    meta = next(s for s in image["steps"] if s.get("id") == "meta")["with"]
    assert meta["images"].startswith("ghcr.io/")
    assert "type=semver" in meta["tags"] and "type=sha" in meta["tags"]
    push = next(s for s in image["steps"] if s.get("uses", "").startswith("docker/build-push"))
    assert push["with"]["push"] is True
