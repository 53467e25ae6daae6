"""Batch mode (`--llm-mode batch`): the run's uncertain tickets go as one Batch API job, at
the batch price, instead of one request each.

The run stays a stream, in two passes over the input:
1. collect: jobs remembered from earlier runs that have finished are stored in the cache;
2. pass 1 reads and predicts as a run does and gathers the uncertain tickets the cache
   cannot answer (redacted, within --max-llm-calls), writing nothing;
3. they go as one job; its name (and its tickets' cache keys, never their text) is
   remembered in the cache directory before anything waits on it;
4. every remembered job is polled until it is done or --llm-wait passes, and its valid
   answers are stored in the cache;
5. pass 2 is the normal run, answering from the cache only: a ticket whose answer has not
   arrived keeps the local prediction with needs_review=true.
A job still running at the end stays remembered and the next run collects it before it asks
anything, so nothing is paid twice; a job that failed or expired is forgotten with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..cache import AnswerCache, answer_key
from ..errors import UsageError
from .base import LLMAnswer, LLMError, Reply
from .escalator import CachedEscalation, EscalationStats, LLMEscalator, count_usage
from .prompt import PROMPT_VERSION

if TYPE_CHECKING:
    from ..model import TicketModel
    from ..runner import ClassifyJob, RunReport

log = logging.getLogger("ticketclf.llm")

JOBS_FILE = "batch-jobs.json"
DEFAULT_WAIT_SECONDS = 3 * 3600.0  # a nightly run's CronJob deadline leaves room for it
MAX_WAIT_SECONDS = 24 * 3600.0  # the Batch API's own target turnaround
POLL_SECONDS = 30.0


@dataclass(frozen=True)
class BatchPoll:
    """Where a job stands: running, succeeded (with each ticket's reply or error, by cache
    key) or ended without answers (failed, cancelled, expired)."""

    state: str
    outcomes: Mapping[str, Reply | LLMError] = field(default_factory=dict)
    detail: str = ""


@runtime_checkable
class BatchBackend(Protocol):
    """A backend with a batch API (Gemini's)."""

    batch_price_factor: float

    def submit_batch(self, texts: Mapping[str, str]) -> str: ...

    def poll_batch(self, name: str, keys: Sequence[str]) -> BatchPoll: ...


@dataclass
class RememberedJob:
    name: str
    prefix: str  # "backend:prompt version:prompt hash:model" of its keys
    keys: list[str]
    submitted: str  # ISO 8601, UTC


class JobBook:
    """The remembered jobs: a small JSON file in the cache directory, 0600, replaced
    atomically. Unreadable, it is treated as empty (with a warning): the worst case is a job
    paid for and never collected."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / JOBS_FILE

    def load(self) -> list[RememberedJob]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return [RememberedJob(**job) for job in data["jobs"]]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("cannot read the remembered batch jobs (%s); starting afresh",
                        type(exc).__name__, extra={"event": "batch_jobs_unreadable"})
            return []

    def save(self, jobs: Sequence[RememberedJob]) -> None:
        if not jobs:
            self.path.unlink(missing_ok=True)
            return
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"jobs": [asdict(job) for job in jobs]}, f)
        os.replace(temporary, self.path)


class CollectingEscalator(CachedEscalation):
    """Pass 1: the cache lookups of a run; the misses are gathered (within the budget) and
    left unanswered."""

    def __init__(self, online: LLMEscalator, in_flight: set[str]) -> None:
        super().__init__(online.backend_name, online.model, online.cache, online.settings,
                         EscalationStats(), online.prompt)
        self.budget = online.budget  # the run's one budget: pass 1 spends it
        self.in_flight = in_flight  # keys a remembered job still running will answer
        self.pending: dict[str, str] = {}  # redacted text by cache key
        self.over_budget = 0

    def _answer(self, misses: Mapping[str, str]) -> dict[str, Any]:
        for key, text in misses.items():
            if key in self.pending or key in self.in_flight:
                continue
            if self.budget.take():
                self.pending[key] = text
            else:
                self.over_budget += 1
        return {}


class CacheOnlyEscalator(CachedEscalation):
    """Pass 2: no requests. The answers the batch jobs brought this run count as the LLM's
    (cached=false, a cache miss), the rest come from the cache; a ticket with neither keeps
    the local prediction, for review."""

    def __init__(self, online: LLMEscalator, fetched: Mapping[str, LLMAnswer]) -> None:
        super().__init__(online.backend_name, online.model, online.cache, online.settings,
                         online.counters, online.prompt)
        self.fetched = fetched

    def _lookup(self, keys: list[str]) -> dict[str, LLMAnswer]:
        answers = super()._lookup([key for key in keys if key not in self.fetched])
        self.counters.cache_lookups["miss"] += sum(key in self.fetched for key in keys)
        return answers

    def _answer(self, misses: Mapping[str, str]) -> dict[str, LLMAnswer]:
        return {key: self.fetched[key] for key in misses if key in self.fetched}


class BatchRun:
    """Submits, remembers, polls and collects jobs for one escalator's backend and prompt."""

    def __init__(self, online: LLMEscalator, backend: BatchBackend, cache: AnswerCache,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.online = online
        self.backend = backend
        self.cache = cache
        self.book = JobBook(cache.directory)
        self.prices = online.prices.scaled(backend.batch_price_factor)
        self.counters = online.counters
        # what the cache keys of this backend, prompt and model share: all but the text's hash
        self.prefix = answer_key(online.backend_name, PROMPT_VERSION, online.prompt.hash,
                                 online.model, "").rsplit(":", 1)[0]
        self.sleep = sleep
        self.fetched: dict[str, LLMAnswer] = {}  # the answers the jobs brought this run

    def mine(self) -> list[RememberedJob]:
        """The remembered jobs this backend, prompt and model can collect."""
        return [job for job in self.book.load() if job.prefix == self.prefix]

    def submit(self, texts: Mapping[str, str]) -> None:
        """One job for these texts, remembered before anything waits on it."""
        try:
            name = self.backend.submit_batch(texts)
        except LLMError as exc:
            self.counters.llm_requests[exc.status] += len(texts)
            log.warning("batch job not created (%s); %d tickets keep the local prediction "
                        "and need review", exc, len(texts),
                        extra={"event": "batch_failed", "status": exc.status})
            return
        job = RememberedJob(name, self.prefix, list(texts),
                            datetime.now(UTC).isoformat(timespec="seconds"))
        self.book.save([*self.book.load(), job])
        self.counters.llm_requests["batch_jobs"] += 1
        log.info("batch job submitted", extra={"event": "batch_submitted", "job": name,
                                               "tickets": len(texts)})

    def collect(self) -> list[RememberedJob]:
        """Poll each remembered job once: store the answers of those done and forget them,
        forget those that ended without answers; the ones still running."""
        running, done = [], set()
        for job in self.mine():
            try:
                poll = self.backend.poll_batch(job.name, job.keys)
            except LLMError as exc:
                if exc.retryable:  # ask again at the next poll
                    running.append(job)
                    continue
                poll = BatchPoll("ended", detail=str(exc))
            if poll.state == "running":
                running.append(job)
                continue
            done.add(job.name)
            if poll.state == "ended":
                log.warning("batch job %s ended without answers (%s); forgotten, its %d tickets "
                            "are asked again by the next run", job.name, poll.detail,
                            len(job.keys), extra={"event": "batch_ended", "job": job.name,
                                                  "state": poll.detail})
            else:
                self._store(poll.outcomes)
        if done:  # re-read: the file is shared with any concurrent shard's run
            self.book.save([job for job in self.book.load() if job.name not in done])
        return running

    def _store(self, outcomes: Mapping[str, Reply | LLMError]) -> None:
        answers = {}
        for key, outcome in outcomes.items():
            status = outcome.status if isinstance(outcome, LLMError) else "ok"
            usage = outcome.usage
            self.counters.llm_requests[status] += 1
            if usage.input_tokens or usage.output_tokens:
                count_usage(self.counters, usage, self.prices)
            if isinstance(outcome, Reply):
                answers[key] = outcome.answer.as_dict()
                self.fetched[key] = outcome.answer
        self.cache.put_many(answers)

    def wait(self, seconds: float, poll_seconds: float) -> list[RememberedJob]:
        """Poll until no job of ours runs or `seconds` pass; the jobs still running."""
        deadline = time.monotonic() + seconds
        running = self.collect()
        while running and (left := deadline - time.monotonic()) > 0:
            self.sleep(min(poll_seconds, left))
            running = self.collect()
        return running


def run_batch(job: ClassifyJob, model: TicketModel, model_dir: Path, escalator: LLMEscalator,
              wait_seconds: float = DEFAULT_WAIT_SECONDS,
              on_progress: Callable[[int, int | None], None] | None = None,
              report: RunReport | None = None, poll_seconds: float = POLL_SECONDS) -> RunReport:
    """`run_classify` with the uncertain tickets answered through one batch job."""
    from ..io.sources import STDIN
    from ..runner import RunReport, run_classify

    backend = escalator.backend
    if not isinstance(backend, BatchBackend):
        raise UsageError(f"--llm-mode batch needs a backend with a batch API; "
                         f"{escalator.backend_name} has none", "use --llm-backend gemini, "
                         "or --llm-mode online")
    if STDIN in job.inputs:
        raise UsageError("--llm-mode batch reads the input twice, so it cannot read stdin",
                         "save the tickets to a file first, or use --llm-mode online")
    if escalator.cache is None:
        raise UsageError("--llm-mode batch brings the answers through the cache",
                         "drop --no-cache")
    report = report if report is not None else RunReport()
    batch = BatchRun(escalator, backend, escalator.cache)
    still_running = batch.collect()  # before asking anything: what earlier runs paid for
    in_flight = {key for remembered in still_running for key in remembered.keys}
    collector = CollectingEscalator(escalator, in_flight)
    # Pass 1 writes nothing and never fails on rejects: pass 2 does both as a run does.
    run_classify(replace(job, dry_run=True, max_reject_rate=1.0), model, model_dir,
                 escalator=collector)
    if collector.over_budget:
        escalator.counters.llm_requests["budget_exhausted"] += collector.over_budget
    if collector.pending:
        batch.submit(collector.pending)
    unanswered = batch.wait(wait_seconds, poll_seconds)
    if unanswered:
        tickets = sum(len(remembered.keys) for remembered in unanswered)
        escalator.counters.llm_requests["batch_pending"] += tickets
        log.warning("%d batch job(s) still running after --llm-wait %.0f s; their %d tickets "
                    "keep the local prediction and need review, and the next run collects "
                    "their answers", len(unanswered), wait_seconds, tickets,
                    extra={"event": "batch_pending", "jobs": len(unanswered)})
    return run_classify(job, model, model_dir,
                        escalator=CacheOnlyEscalator(escalator, batch.fetched),
                        on_progress=on_progress, report=report)
