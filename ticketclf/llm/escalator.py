"""The escalation step for the tickets the local model is unsure of:
redact → cache lookup → LLM (bounded, retried) → validate → cache write → decision.

Whatever the LLM does, every ticket gets a decision: a failed, blocked, malformed, over-budget
or circuit-broken request keeps the local prediction with needs_review=true. The counts go
to an EscalationStats (the run report's, or the caller's own).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..cache import AnswerCache, answer_key, answer_record
from ..pipeline import Decision
from ..schema import Prediction, Ticket
from .base import (
    UNKNOWN_CATEGORY,
    InvalidAnswer,
    LLMAnswer,
    LLMBackend,
    LLMError,
    Prices,
    TransientError,
    Usage,
)
from .cost import estimate_usage
from .limits import Budget, CircuitBreaker, RateLimiter, RetryPolicy
from .prompt import DEFAULT_PROMPT, PROMPT_VERSION, Prompt
from .redact import redact

log = logging.getLogger("ticketclf.llm")
_T = TypeVar("_T")


@dataclass
class EscalationStats:
    """What the step did: a run's report holds one, evaluation and benchmarks their own."""

    cache_lookups: Counter[str] = field(default_factory=Counter)
    llm_requests: Counter[str] = field(default_factory=Counter)
    llm_tokens: Counter[str] = field(default_factory=Counter)
    llm_cost_usd: float = 0.0


@dataclass(frozen=True)
class EscalationSettings:
    concurrency: int = 4
    requests_per_minute: float | None = None  # None: no limit
    max_calls: int | None = None  # requests per run, retries included; None: no limit
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker_threshold: int = 5  # consecutive failed tickets that stop all calls
    prices: Prices | None = None  # None: the backend's prices for its model


@dataclass(frozen=True, slots=True)
class _Outcome:
    """How one request (with its retries) ended."""

    answer: LLMAnswer | None
    status: str  # ok | error | timeout | blocked | invalid | budget_exhausted | circuit_open
    retries: int = 0
    usage: Usage = Usage()
    detail: str = ""


def count_usage(counters: EscalationStats, usage: Usage, prices: Prices) -> None:
    """Tokens by kind ("cached" is the part of "input" read from the service's prompt cache)
    and their cost."""
    counters.llm_tokens["input"] += usage.input_tokens
    counters.llm_tokens["output"] += usage.output_tokens
    if usage.cached_input_tokens:
        counters.llm_tokens["cached"] += usage.cached_input_tokens
    counters.llm_cost_usd += prices.cost(usage)


def _text_hash(redacted: str) -> str:
    """What logs may say about a ticket's text."""
    return hashlib.sha256(redacted.encode("utf-8", "surrogatepass")).hexdigest()[:16]


class CachedEscalation:
    """Redaction, the cache and the decisions; subclasses say how cache misses get answers."""

    def __init__(self, backend: str, model: str, cache: AnswerCache | None,
                 settings: EscalationSettings | None = None,
                 counters: EscalationStats | None = None,
                 prompt: Prompt = DEFAULT_PROMPT) -> None:
        self.backend_name = backend
        self.model = model
        self.prompt = prompt
        self.cache = cache
        self.settings = settings or EscalationSettings()
        self.prices = self.settings.prices or Prices()
        self.counters = counters if counters is not None else EscalationStats()
        self.budget = Budget(self.settings.max_calls)
        self.escalated = 0  # tickets handed to this step

    def resolve(self, items: Sequence[tuple[Ticket, Prediction]]) -> list[Decision]:
        self.escalated += len(items)
        redacted = [redact(ticket.text) for ticket, _ in items]
        keys = [answer_key(self.backend_name, PROMPT_VERSION, self.prompt.hash, self.model, text)
                for text in redacted]
        cached = self._lookup(keys)
        # One request per distinct text: duplicates in a batch share the answer.
        misses = {key: text for key, text in zip(keys, redacted, strict=True) if key not in cached}
        fresh = self._answer(misses) if misses else {}
        decisions = []
        for (ticket, local), key, text in zip(items, keys, redacted, strict=True):
            if key in cached:
                decision = _llm_decision(local, cached[key], cached=True)
            elif key in fresh:
                decision = _llm_decision(local, fresh[key], cached=False)
            else:
                decision = Decision(local, "model", cached=False, needs_review=True)
            log.debug("ticket escalated", extra={
                "event": "ticket_escalated", "ticket_id": ticket.id,
                "text_sha256": _text_hash(text), "decided_by": decision.decided_by,
                "cached": decision.cached})
            decisions.append(decision)
        return decisions

    def _lookup(self, keys: list[str]) -> dict[str, LLMAnswer]:
        if self.cache is None:
            return {}
        answers = {}
        for key, value in self.cache.get_many(set(keys)).items():
            try:
                answers[key] = self.prompt.validate(value)
            except InvalidAnswer:
                continue  # written by another version, or damaged: ask again
        for key in keys:
            self.counters.cache_lookups["hit" if key in answers else "miss"] += 1
        return answers

    def _answer(self, misses: Mapping[str, str]) -> dict[str, LLMAnswer]:
        """Answers for some of the redacted texts, by key."""
        raise NotImplementedError

    def _record(self, redacted_text: str, answer: LLMAnswer) -> dict[str, Any]:
        """What the cache keeps of an answer: enough to learn from it (ticketclf learn)."""
        return answer_record(answer.as_dict(), redacted_text, backend=self.backend_name,
                             model=self.model, prompt_version=PROMPT_VERSION,
                             prompt_hash=self.prompt.hash,
                             taxonomy_hash=self.prompt.taxonomy.hash)

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()

    def __enter__(self) -> CachedEscalation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _llm_decision(local: Prediction, answer: LLMAnswer, cached: bool) -> Decision:
    with_sentiment = local.replace("sentiment", answer.sentiment, answer.confidence)
    if answer.category == UNKNOWN_CATEGORY:
        # No category fits in the LLM's view: keep the model's, take the sentiment, flag it.
        return Decision(with_sentiment, "llm", cached=cached, needs_review=True)
    prediction = with_sentiment.replace("category", answer.category, answer.confidence)
    return Decision(prediction, "llm", cached=cached, needs_review=False)


class LLMEscalator(CachedEscalation):
    """Sends cache misses to an LLM backend from a pool of `concurrency` threads."""

    def __init__(self, backend: LLMBackend, cache: AnswerCache | None,
                 settings: EscalationSettings | None = None,
                 counters: EscalationStats | None = None) -> None:
        super().__init__(backend.name, backend.model, cache, settings, counters, backend.prompt)
        self.backend = backend
        self._limiter = RateLimiter(self.settings.requests_per_minute)
        self._breaker = CircuitBreaker(self.settings.breaker_threshold)
        self._stop = threading.Event()  # set on close: sleeping retries give up at once
        self._pool: _DaemonPool | None = None
        self._warned: set[str] = set()

    def _answer(self, misses: Mapping[str, str]) -> dict[str, LLMAnswer]:
        if self._pool is None:
            self._pool = _DaemonPool(self.settings.concurrency, "ticketclf-llm")
        futures: dict[Future[_Outcome], str] = {
            self._pool.submit(self._ask, text): key for key, text in misses.items()}
        answers: dict[str, LLMAnswer] = {}
        not_done = set(futures)
        try:
            while not_done:
                done, not_done = wait(not_done, return_when=FIRST_COMPLETED)
                arrived: dict[str, Any] = {}
                for future in done:
                    outcome = future.result()
                    self._count(outcome)
                    if outcome.answer is not None:
                        answers[futures[future]] = outcome.answer
                        arrived[futures[future]] = self._record(misses[futures[future]],
                                                                outcome.answer)
                # Written as they arrive, so an interrupted run keeps what it paid for.
                if self.cache is not None:
                    self.cache.put_many(arrived)
        finally:
            for future in not_done:
                future.cancel()
        return answers

    def _ask(self, text: str) -> _Outcome:
        """One ticket: requests until an answer, a final error or a limit (worker thread)."""
        sent, usage = 0, Usage()

        def ended(status: str, answer: LLMAnswer | None = None, detail: str = "") -> _Outcome:
            return _Outcome(answer, status, max(sent - 1, 0), usage, detail)

        while True:
            if self._breaker.is_open:
                return ended("circuit_open")
            if not self.budget.take():
                return ended("budget_exhausted")
            if not self._limiter.wait(self._stop):
                return ended("cancelled")
            sent += 1
            try:
                reply = self.backend.classify(text)
            except LLMError as exc:
                usage += exc.usage
                delay = None
                if exc.retryable and sent < self.settings.retry.attempts:
                    asked = exc.retry_after if isinstance(exc, TransientError) else None
                    delay = self.settings.retry.delay(sent, asked)
                if delay is not None:
                    if self._stop.wait(delay):
                        return ended("cancelled")
                    continue
                if self._breaker.record(failed=exc.service_failure):
                    log.warning("LLM circuit breaker open: %d tickets in a row failed (last: %s);"
                                " no more LLM calls this run", self._breaker.threshold, exc,
                                extra={"event": "llm_circuit_open", "last_error": str(exc)})
                return ended(exc.status, detail=str(exc))
            self._breaker.record(failed=False)
            usage += reply.usage
            return ended("ok", reply.answer)

    def _count(self, outcome: _Outcome) -> None:
        """Main thread only: the counters are not locked."""
        c = self.counters
        c.llm_requests[outcome.status] += 1
        if outcome.retries:
            c.llm_requests["retried"] += outcome.retries
        if outcome.usage.input_tokens or outcome.usage.output_tokens:
            count_usage(c, outcome.usage, self.prices)
        if outcome.status != "ok" and outcome.status not in self._warned:
            self._warned.add(outcome.status)
            log.warning("LLM request ended %s%s; the ticket keeps the local prediction and "
                        "needs review (further ones are counted, not logged)", outcome.status,
                        f" ({outcome.detail})" if outcome.detail else "",
                        extra={"event": "llm_fallback", "status": outcome.status})

    def close(self) -> None:
        self._stop.set()
        if self._pool is not None:
            # Not waiting: after an interrupt, requests in flight are abandoned (their daemon
            # threads end with their timeout, or with the process).
            self._pool.shutdown()
            self._pool = None
        self.backend.close()
        super().close()


class _DaemonPool:
    """A fixed pool of daemon threads running calls into Futures.

    Not ThreadPoolExecutor: the interpreter joins its threads at exit, so a request hanging
    when SIGTERM arrives would hold the process (exit 143) until the request's timeout
    (--llm-timeout, 30 s by default) instead of letting it exit at once.
    """

    def __init__(self, workers: int, name: str) -> None:
        self._tasks: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]
                                       | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., _T], *args: Any) -> Future[_T]:
        future: Future[_T] = Future()
        self._tasks.put((future, fn, args))
        return future

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            future, fn, args = task
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while queued
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on it
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self) -> None:
        """Cancel what has not started and let every thread end after its current call."""
        while True:
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                break
            if task is not None:
                task[0].cancel()
        for _ in self._threads:
            self._tasks.put(None)


@dataclass
class DryRunEstimate:
    tickets: int = 0  # would be sent
    over_budget: int = 0  # would fall back: beyond --max-llm-calls
    usage: Usage = Usage()
    cost_usd: float = 0.0


class DryRunEscalator(CachedEscalation):
    """Counts what the LLM step would send, and its estimated tokens and cost; calls nothing."""

    def __init__(self, backend: str, model: str, cache: AnswerCache | None,
                 settings: EscalationSettings | None = None,
                 counters: EscalationStats | None = None,
                 prompt: Prompt = DEFAULT_PROMPT) -> None:
        super().__init__(backend, model, cache, settings, counters, prompt)
        self.estimate = DryRunEstimate()

    def _answer(self, misses: Mapping[str, str]) -> dict[str, LLMAnswer]:
        for text in misses.values():
            if not self.budget.take():
                self.estimate.over_budget += 1
                continue
            usage = estimate_usage(self.prompt, text)
            self.estimate.tickets += 1
            self.estimate.usage += usage
            self.estimate.cost_usd += self.prices.cost(usage)
        return {}
