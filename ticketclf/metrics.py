"""Run metrics, pushed to a Prometheus Pushgateway: the only module importing prometheus_client.

A batch job cannot be scraped, so every run pushes its gauges once, when it ends: success,
failure and SIGTERM alike. The push is a POST (`pushadd`), which replaces only the metric
families it carries, and `ticketclf_last_success_timestamp_seconds` is carried only by a
successful run, so a failed run leaves the last success where it was. Every family is pushed
with at least one sample (known labels at 0), because a POST of a family without samples
would leave the previous run's values in place. A drift figure the model gives no reference
for (drift.py) is pushed as NaN, which replaces the old value and never breaches an alert.

Grouping key: `job` (default `ticketclf`) plus `shard` ("I/N") when sharded; no per-pod or
per-ticket labels. A gateway that is down or refuses the push is logged once as a warning and
never changes the exit code.
"""

from __future__ import annotations

import base64
import logging
import math
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import default_handler, pushadd_to_gateway
from prometheus_client.registry import Collector

from . import __version__
from .config import DEFAULT_JOB, secret
from .drift import figures
from .errors import ConfigError, exit_code_for
from .runner import CONFIDENCE_BUCKETS, RunReport, Shard
from .schema import HEADS

log = logging.getLogger("ticketclf.metrics")

# Short: a push happens at the very end, also inside a SIGTERM grace period.
PUSH_TIMEOUT_SECONDS = 5.0
ENV_TOKEN = "TICKETCLF_PUSHGATEWAY_TOKEN"
ENV_USERNAME = "TICKETCLF_PUSHGATEWAY_USERNAME"
ENV_PASSWORD = "TICKETCLF_PUSHGATEWAY_PASSWORD"

# Label values pushed even at 0, so each family always replaces the previous run's. Those of
# the category, sentiment and priority families are the run's taxonomy's (its model's).
OUTCOMES = ("classified", "rejected")
DECIDERS = ("model", "llm")
CACHE_RESULTS = ("hit", "miss")
LLM_STATUSES = ("ok", "error")
TOKEN_KINDS = ("input", "output")


@dataclass(frozen=True)
class Pushgateway:
    """Where a run's metrics go: the gateway URL and the grouping key of this job."""

    url: str
    job: str = DEFAULT_JOB
    shard: Shard | None = None
    timeout: float = PUSH_TIMEOUT_SECONDS

    @property
    def grouping_key(self) -> dict[str, str]:
        return {"shard": f"{self.shard.index}/{self.shard.count}"} if self.shard else {}

    @property
    def safe_url(self) -> str:
        """The URL without any user:password part, for logs and messages."""
        parts = urlsplit(_with_scheme(self.url))
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))

    def push_run(self, report: RunReport) -> bool:
        """Push the run's metrics; on any failure log one warning and return False."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(RunCollector(report, ended_at=time.time()))
        try:
            pushadd_to_gateway(self.url, job=self.job, registry=registry,
                               grouping_key=self.grouping_key, timeout=self.timeout,
                               handler=_authenticated_handler)
        except Exception as exc:  # noqa: BLE001 - metrics must never fail the run
            log.warning("metrics push failed; the run's exit code is unaffected", extra={
                "event": "metrics_push_failed", "pushgateway": self.safe_url,
                "error": _reason(exc)})
            return False
        log.info("metrics pushed", extra={"event": "metrics_pushed", "pushgateway": self.safe_url,
                                          "job": self.job, **self.grouping_key})
        return True

    def problem(self) -> str | None:
        """None when the gateway answers its readiness check (with our credentials), else why."""
        request = urllib.request.Request(f"{_with_scheme(self.url).rstrip('/')}/-/ready")
        try:
            for name, value in auth_headers():
                request.add_header(name, value)
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except Exception as exc:  # noqa: BLE001 - any failure is the answer
            return _reason(exc)
        return None


def _authenticated_handler(url: str, method: str, timeout: float | None,
                           headers: list[tuple[str, str]], data: bytes) -> Callable[[], None]:
    """prometheus_client's HTTP handler, with our credentials (read at push time, so a bad
    secret file is one failed push, not a failed run)."""
    return default_handler(url, method, timeout, [*headers, *auth_headers()], data)


def auth_headers() -> list[tuple[str, str]]:
    """A bearer token, or basic auth, from the environment or mounted `*_FILE` secrets."""
    token = secret(ENV_TOKEN)
    if token:
        return [("Authorization", f"Bearer {token}")]
    username = secret(ENV_USERNAME)
    if not username:
        return []
    password = secret(ENV_PASSWORD)
    if password is None:
        raise ConfigError(f"{ENV_USERNAME} is set but {ENV_PASSWORD} is not",
                          f"set {ENV_PASSWORD} or {ENV_PASSWORD}_FILE")
    credentials = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return [("Authorization", f"Basic {credentials}")]


@contextmanager
def pushed_when_done(gateway: Pushgateway | None, report: RunReport) -> Iterator[RunReport]:
    """Run the body, note how it ended on `report`, then push, whatever happened (incl.
    SIGTERM, which the CLI turns into an exception). Exceptions pass through unchanged."""
    try:
        yield report
    except BaseException as exc:
        report.success = False
        report.exit_code = int(exit_code_for(exc))
        raise
    else:
        report.exit_code = 0
    finally:
        if gateway is not None:
            gateway.push_run(report)


class RunCollector(Collector):
    """The metric families of one run, built from its report when the registry is collected."""

    def __init__(self, report: RunReport, ended_at: float) -> None:
        self.report = report
        self.ended_at = ended_at

    def collect(self) -> Iterable[Metric]:
        r = self.report
        exit_code = r.exit_code if r.exit_code is not None else int(not r.success)
        info = GaugeMetricFamily("ticketclf_last_run_info",
                                 "Versions of the last run's program and model (value 1).",
                                 labels=["version", "model_version"])
        info.add_metric([__version__, r.model_version], 1)
        yield info
        yield _gauge("ticketclf_last_run_timestamp_seconds", "When the last run ended (Unix time).",
                     self.ended_at)
        yield _gauge("ticketclf_last_run_duration_seconds",
                     "Wall-clock seconds of the last run, start to end.",
                     max(0.0, self.ended_at - r.started_at))
        yield _gauge("ticketclf_last_run_success", "1 if the last run succeeded, else 0.",
                     float(r.success))
        yield _gauge("ticketclf_last_run_exit_code", "Exit code of the last run.", exit_code)
        yield _labelled("ticketclf_last_run_rows", "Rows of the last run, by outcome.", "outcome",
                        {"classified": r.classified, "rejected": r.rejected}, OUTCOMES)
        yield _labelled("ticketclf_last_run_category_rows",
                        "Classified rows of the last run, by final category.", "category",
                        r.categories, r.taxonomy.labels("category"))
        yield _labelled("ticketclf_last_run_sentiment_rows",
                        "Classified rows of the last run, by final sentiment.", "sentiment",
                        r.sentiments, r.taxonomy.labels("sentiment"))
        yield _labelled("ticketclf_last_run_priority_rows",
                        "Classified rows of the last run, by priority.", "priority",
                        r.priorities, r.taxonomy.priority.levels)
        yield _gauge("ticketclf_last_run_needs_review_rows",
                     "Classified rows of the last run flagged for human review.", r.needs_review)
        yield _labelled("ticketclf_last_run_decisions",
                        "Classified rows of the last run, by who decided (model or llm).",
                        "decided_by", r.decided_by, DECIDERS)
        yield _labelled("ticketclf_last_run_stage_seconds",
                        "Seconds the last run spent per stage (read, model, llm, write).",
                        "stage", r.stages.as_dict(), ())
        yield _labelled("ticketclf_last_run_cache_lookups",
                        "LLM-answer cache lookups of the last run, by result.", "result",
                        r.llm.cache_lookups, CACHE_RESULTS)
        yield _labelled("ticketclf_last_run_llm_requests",
                        "LLM requests of the last run, by status (ok = answered).", "status",
                        r.llm.llm_requests, LLM_STATUSES)
        yield _labelled("ticketclf_last_run_llm_tokens", "LLM tokens of the last run, by kind.",
                        "kind", r.llm.llm_tokens, TOKEN_KINDS)
        yield _gauge("ticketclf_last_run_llm_cost_usd",
                     "Estimated LLM cost of the last run in US dollars.", r.llm.llm_cost_usd)
        confidence = HistogramMetricFamily(
            "ticketclf_last_run_confidence",
            "Final confidence of each classified row of the last run, by head.", labels=["head"])
        for head, histogram in sorted(r.confidence.items()):
            cumulative, buckets = 0, []
            for bound, count in zip([*map(str, CONFIDENCE_BUCKETS), "+Inf"], histogram.counts,
                                    strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            confidence.add_metric([head], buckets, sum_value=histogram.total)
        yield confidence
        yield from _drift_families(r)
        if r.success:  # only a success moves it; a failed run's POST leaves it untouched
            yield _gauge("ticketclf_last_success_timestamp_seconds",
                         "When the last successful run ended (Unix time).", self.ended_at)


def _drift_families(r: RunReport) -> Iterator[GaugeMetricFamily]:
    """How far the run is from its model's training data (drift.py); NaN where unknown."""
    f = figures(r.prior, r.drift, {"category": r.categories, "sentiment": r.sentiments}, HEADS)
    yield _labelled("ticketclf_last_run_label_divergence",
                    "Jensen-Shannon divergence (base 2, 0-1) of the last run's final label mix "
                    "from the training label mix, by head.", "head",
                    {h: _or_nan(v) for h, v in f.divergence.items()}, HEADS)
    yield _labelled("ticketclf_last_run_low_confidence_ratio",
                    "Share of the last run's tickets whose local-model confidence was below the "
                    "model card's threshold, before escalation, by head.", "head",
                    {h: _or_nan(v) for h, v in f.low_confidence.items()}, HEADS)
    yield _gauge("ticketclf_last_run_unseen_token_ratio",
                 "Share of the last run's word tokens (sampled tickets) absent from the model's "
                 "training vocabulary.", _or_nan(f.unseen_tokens))
    yield _gauge("ticketclf_last_run_unseen_language_ratio",
                 "Share of the last run's tickets in a language the model was not trained on.",
                 _or_nan(f.unseen_languages))


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _labelled(name: str, documentation: str, label: str, values: Mapping[str, float],
              known: Iterable[str]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key in sorted({*known, *values}):
        family.add_metric([key], values.get(key, 0))
    return family


def _with_scheme(url: str) -> str:
    return url if url.startswith(("http://", "https://")) else f"http://{url}"


def _reason(exc: BaseException) -> str:
    """A short reason without the URL (which may carry credentials) or a traceback."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):  # wraps the socket error: refused, DNS, timeout
        return str(exc.reason)
    return f"{type(exc).__name__}: {exc}"
