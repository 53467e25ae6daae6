"""deploy/prometheus, deploy/grafana and docker-compose.yml: the rules pass promtool, a real
Prometheus scrapes a real Pushgateway after a real run, every PromQL expression of the
dashboard and the rules returns data, and the compose stack agrees with itself."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import ROOT, SAMPLES, SHIPPED_MODEL, run_cli, write_csv
from .services import Prometheus, Pushgateway

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "ticketclf.json"
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
COMPOSE = ROOT / "docker-compose.yml"

# A comparison between spaces, not a label matcher like {status!="ok"}.
COMPARISON = re.compile(r"\s(==|!=|>=|<=|>|<)\s+(?!bool\b)")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def dashboard_exprs() -> list[Any]:
    return [pytest.param(target["expr"], id=f"{panel['title']} {target['refId']}")
            for panel in json.loads(DASHBOARD.read_text())["panels"] for target in panel["targets"]]


def rules() -> list[dict[str, Any]]:
    return [rule for path in RULES for group in load_yaml(path)["groups"]
            for rule in group["rules"]]


def unfiltered(expr: str) -> str:
    """The expression with its comparisons made `bool`: 0/1 for every series instead of
    dropping those that do not breach, so it returns data whenever its inputs exist."""
    return COMPARISON.sub(lambda m: f" {m.group(1)} bool ", expr)


def isolated_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TICKETCLF_", "GEMINI_"))}
    return {**env, "TICKETCLF_CACHE_DIR": str(tmp / "cache"), "TICKETCLF_LOG_FORMAT": "json"}


def push_run(pushgateway: Pushgateway, job: str, src: Path, tmp: Path) -> int:
    r = run_cli("classify", str(src), "-o", str(tmp / f"{job}.csv"), "-q", "--llm-threshold", "0",
                "--pushgateway", pushgateway.url, "--job-name", job, env=isolated_env(tmp))
    return r.returncode


@pytest.fixture(scope="module")
def scraped_job(pushgateway: Pushgateway, prometheus: Prometheus,
                tmp_path_factory: pytest.TempPathFactory) -> str:
    """The job of one successful run, pushed and then scraped by Prometheus."""
    job = "monitoring-ok"
    assert push_run(pushgateway, job, SAMPLES / "tickets.csv", tmp_path_factory.mktemp("ok")) == 0
    assert prometheus.wait_for(f'ticketclf_last_success_timestamp_seconds{{job="{job}"}}')
    return job


def test_promtool_checks_the_rules(promtool):
    r = subprocess.run([promtool, "check", "rules", *map(str, RULES)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_rule_unit_tests_pass(promtool):
    assert RULE_TESTS
    r = subprocess.run([promtool, "test", "rules", *map(str, RULE_TESTS)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_checks_the_prometheus_config_and_the_rules_it_loads(promtool):
    r = subprocess.run([promtool, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(rules())} rules found" in r.stdout + r.stderr


def test_every_alert_the_readme_promises_exists():
    names = {rule["alert"] for rule in rules() if "alert" in rule}
    assert {"TicketclfNoRecentSuccess", "TicketclfLastRunFailed", "TicketclfRejectRateHigh",
            "TicketclfLLMErrorRateHigh", "TicketclfMetricsPushFailing"} <= names
    assert {"TicketclfLabelMixDrift", "TicketclfUnseenTokensHigh", "TicketclfUnseenLanguagesHigh",
            "TicketclfLowConfidenceJump"} <= names
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert all(f"`{name}`" in readme for name in names)


def test_prometheus_keeps_the_pushed_job_label(prometheus, scraped_job):
    (series,) = prometheus.query(f'ticketclf_last_run_success{{job="{scraped_job}"}}')
    labels = series["metric"]
    assert labels["job"] == scraped_job  # honor_labels: not job="pushgateway"
    assert "exported_job" not in labels and "shard" not in labels
    assert series["value"][1] == "1"


def test_every_metric_the_dashboard_and_the_rules_name_is_one_a_run_pushes(pushgateway,
                                                                          scraped_job):
    """A panel or rule on a metric no run pushes shows nothing, even where its expression
    still returns data (`or vector(0)`, `absent(...)`)."""
    dashboard = DASHBOARD.read_text()
    named = set(re.findall(r"\b(?:ticketclf|push)_\w+", dashboard))
    named |= {name for rule in rules() for name in re.findall(r"\b(?:ticketclf|push)_\w+",
                                                              rule["expr"])}
    pushed = {key.split("{")[0] for key in pushgateway.series(scraped_job)}
    assert {"ticketclf_last_run_label_divergence", "ticketclf_last_run_unseen_token_ratio"} <= named
    assert named <= pushed, named - pushed


def test_a_runs_drift_figures_are_queryable_in_prometheus(prometheus, scraped_job):
    for family in ("label_divergence", "low_confidence_ratio"):
        found = prometheus.wait_for(f'ticketclf_last_run_{family}{{job="{scraped_job}"}}')
        values = {s["metric"]["head"]: float(s["value"][1]) for s in found}
        assert values.keys() == {"category", "sentiment"}, family
        assert all(0 <= v <= 1 for v in values.values()), (family, values)
    (tokens,) = prometheus.query(f'ticketclf_last_run_unseen_token_ratio{{job="{scraped_job}"}}')
    assert 0 < float(tokens["value"][1]) < 1
    # unknown (NaN), not 0, while the shipped card lists no training languages
    (languages,) = prometheus.query(
        f'ticketclf_last_run_unseen_language_ratio{{job="{scraped_job}"}}')
    if json.loads((SHIPPED_MODEL / "card.json").read_text()).get("languages"):
        assert 0 <= float(languages["value"][1]) <= 1
    else:
        assert languages["value"][1] == "NaN"


@pytest.mark.parametrize("expr", dashboard_exprs())
def test_every_dashboard_expression_returns_data_for_a_pushed_run(prometheus, scraped_job, expr):
    assert prometheus.wait_for(expr.replace("$job", scraped_job), timeout=10), expr


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule.get("alert", rule.get("record")))
def test_every_rule_expression_returns_data_for_a_pushed_run(prometheus, scraped_job, rule):
    expr = rule["expr"]
    if expr.startswith("absent("):  # data exists, so it must be empty: a typo would not be
        assert prometheus.query(expr) == []
        return
    assert prometheus.wait_for(unfiltered(expr), timeout=10), unfiltered(expr)


def test_prometheus_loads_and_evaluates_every_rule_without_errors(prometheus, scraped_job):
    deadline = time.monotonic() + 20
    while True:
        loaded = {r["name"]: (r["health"], r.get("lastError", ""))
                  for g in prometheus.get("/api/v1/rules")["groups"] for r in g["rules"]}
        if all(h == "ok" for h, _ in loaded.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.25)  # health is "unknown" until the first evaluation
    assert set(loaded) == {rule.get("alert", rule.get("record")) for rule in rules()}
    assert all(h == "ok" for h, _ in loaded.values()), loaded


def test_a_failed_run_fires_its_alerts_in_prometheus(pushgateway, prometheus, tmp_path):
    job = "monitoring-rejects"
    src = write_csv(tmp_path / "in.csv", ["id", "text"],
                    [[f"R{i}", "my bill is wrong" if i % 2 else ""] for i in range(20)])
    assert push_run(pushgateway, job, src, tmp_path) == 65
    firing = prometheus.wait_for(f'ALERTS{{job="{job}",alertstate="firing"}}', timeout=30)
    names = {series["metric"]["alertname"] for series in firing}
    assert {"TicketclfLastRunFailed", "TicketclfRejectRateHigh"} <= names
    assert "TicketclfNoRecentSuccess" not in names


def test_the_dashboard_has_the_panels_operators_need():
    dashboard = json.loads(DASHBOARD.read_text())
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {"Last success age", "Run duration", "Rows per run", "Reject rate", "Category mix",
            "Sentiment mix", "Escalation rate", "Cache hit rate", "LLM requests by status",
            "LLM tokens", "LLM cost", "Label drift", "Low-confidence share", "Unseen words",
            "Unseen languages"} <= titles
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and all('job=~"$job"' in t["expr"] for t in panel["targets"])
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert "ticketclf_last_run_timestamp_seconds" in variables["job"]["definition"]


def service_path(service: dict[str, Any], container_path: str) -> Path | None:
    """The host file behind a container path, through the service's bind mounts."""
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith(".") and (container_path + "/").startswith(target.rstrip("/") + "/"):
            return ROOT / source / container_path[len(target):].lstrip("/")
    return None


def published_container_ports(service: dict[str, Any]) -> set[int]:
    return {int(str(p).split(":")[-1]) for p in service.get("ports", [])}


def host_port(url: str) -> tuple[str, int]:
    host, port = re.sub(r"^https?://", "", url).split("/")[0].split(":")
    return host, int(port)


def test_compose_file_references_existing_files_and_declared_volumes():
    compose = load_yaml(COMPOSE)
    services = compose["services"]
    assert {"pushgateway", "prometheus", "grafana", "ticketclf"} <= services.keys()
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source}"
            else:
                assert source in compose["volumes"], f"{name}: undeclared volume {source}"
        for dependency in service.get("depends_on", []):
            assert dependency in services, f"{name} depends on unknown {dependency}"
    assert (ROOT / services["ticketclf"]["build"] / "Dockerfile").exists()


def test_compose_ports_and_service_names_agree_with_the_prometheus_config():
    services = load_yaml(COMPOSE)["services"]
    prometheus = services["prometheus"]
    config_path = service_path(prometheus, "/etc/prometheus/prometheus.yml")
    assert config_path == PROMETHEUS_DIR / "prometheus.yml"
    config = load_yaml(config_path)
    for scrape in config["scrape_configs"]:
        assert scrape["honor_labels"] is True
        for static in scrape["static_configs"]:
            for target in static["targets"]:
                host, port = host_port(target)
                assert host in services and port in published_container_ports(services[host])
                assert f"--web.listen-address=:{port}" in services[host]["command"]
    for pattern in config["rule_files"]:  # relative to the config, inside the container
        mounted = service_path(prometheus, f"/etc/prometheus/{pattern}")
        assert mounted is not None and sorted(mounted.parent.glob(mounted.name)) == RULES


def test_the_ticketclf_service_classifies_mounted_samples_and_pushes_to_the_pushgateway():
    services = load_yaml(COMPOSE)["services"]
    ticketclf = services["ticketclf"]
    host, port = host_port(ticketclf["environment"]["TICKETCLF_PUSHGATEWAY_URL"])
    assert host == "pushgateway" and port in published_container_ports(services[host])
    assert host in ticketclf["depends_on"]
    command = ticketclf["command"]
    assert command[0] == "classify"
    assert service_path(ticketclf, command[1]) == SAMPLES / "tickets.csv"


def test_grafana_provisioning_points_at_the_compose_services_and_the_dashboard():
    services = load_yaml(COMPOSE)["services"]
    grafana = services["grafana"]
    (datasource,) = load_yaml(PROVISIONING / "datasources" / "prometheus.yml")["datasources"]
    host, port = host_port(datasource["url"])
    assert datasource["type"] == "prometheus"
    assert host == "prometheus" and port in published_container_ports(services[host])
    assert service_path(grafana, "/etc/grafana/provisioning") == PROVISIONING
    (provider,) = load_yaml(PROVISIONING / "dashboards" / "ticketclf.yml")["providers"]
    dashboards = service_path(grafana, provider["options"]["path"])
    assert dashboards is not None and DASHBOARD in dashboards.glob("*.json")
