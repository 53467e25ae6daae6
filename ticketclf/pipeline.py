"""classify_batches: batches of tickets → local model (worker processes, order kept) →
escalation of the uncertain ones (when an escalator is given) → priority → results."""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import signal
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.pool import AsyncResult
from pathlib import Path
from typing import Protocol

from .drift import DriftCounts, WordVocabulary, count_batch
from .io.readers import Batch
from .model import TicketModel, load_model
from .model.language import UNDETERMINED
from .priority import priority_for
from .schema import Prediction, Reject, Result, Ticket


@dataclass(frozen=True)
class Thresholds:
    """When an answer is uncertain (escalated or flagged): per head, the confidence below which
    it is; and, when the model lists its training languages, any ticket in another language
    (one the model has never seen; "und", too short to tell, is left to the confidence)."""

    by_head: dict[str, float]
    languages: frozenset[str] = frozenset()

    @classmethod
    def from_model(cls, model: TicketModel, override: float | None = None) -> Thresholds:
        return cls({head: model.threshold(head) if override is None else override
                    for head in model.heads}, model.languages)

    def unseen_language(self, p: Prediction) -> bool:
        return bool(self.languages) and p.language not in self.languages \
            and p.language not in ("", UNDETERMINED)

    def uncertain(self, p: Prediction) -> bool:
        return any(p.confidence(head) < t for head, t in self.by_head.items()) \
            or self.unseen_language(p)


@dataclass(slots=True)
class Decision:
    """What the escalation step concluded for one uncertain ticket."""

    prediction: Prediction
    decided_by: str  # "model" or "llm"
    cached: bool
    needs_review: bool


class Escalator(Protocol):
    """Resolves the tickets the local model is unsure of (the LLM step)."""

    def resolve(self, items: Sequence[tuple[Ticket, Prediction]]) -> list[Decision]: ...


@dataclass
class StageTimes:
    """Seconds the main process spent in each stage (model time is waiting on workers)."""

    read: float = 0.0
    model: float = 0.0
    llm: float = 0.0
    write: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {"read": self.read, "model": self.model, "llm": self.llm, "write": self.write}


@dataclass
class ClassifiedBatch:
    results: list[Result]
    rejects: list[Reject] = field(default_factory=list)
    drift: DriftCounts = field(default_factory=DriftCounts)


# --- worker processes -------------------------------------------------------------------

_worker_model: TicketModel | None = None


def _init_worker(model_dir: str) -> None:
    global _worker_model
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides how a run ends
    _worker_model = load_model(Path(model_dir))


def _predict_in_worker(texts: list[str]) -> list[Prediction]:
    assert _worker_model is not None
    return _worker_model.predict(texts)


class Predictor:
    """Runs the model over batches in order, in worker processes when there is more than one
    batch and more than one worker. In-flight batches are bounded, so memory is too."""

    def __init__(self, model: TicketModel, model_dir: Path, workers: int) -> None:
        self.model = model
        self.model_dir = model_dir
        self.workers = max(1, workers)
        self._pool: multiprocessing.pool.Pool | None = None

    def map(
        self, batches: Iterable[Batch], times: StageTimes
    ) -> Iterator[tuple[Batch, list[Prediction]]]:
        """(batch, predictions) in input order. The first batch is always predicted here, so
        small inputs never pay for starting processes and a pipe's first rows come out at once;
        from the second batch on, worker processes take over when there is more than one."""
        pending: deque[tuple[Batch, AsyncResult[list[Prediction]]]] = deque()
        limit = self.workers * 2
        try:
            for n, batch in enumerate(_timed(batches, times)):
                if n == 0 or self.workers == 1:
                    yield batch, self._predict_here(batch, times)
                    continue
                pool = self._pool or self._start_pool()
                texts = [t.text for t in batch.tickets]
                pending.append((batch, pool.apply_async(_predict_in_worker, (texts,))))
                # Yield what is done (keeps a slow pipe flowing); block only at the limit.
                while pending and (len(pending) >= limit or pending[0][1].ready()):
                    yield self._collect(pending, times)
            while pending:
                yield self._collect(pending, times)
        finally:
            self.close()

    def _predict_here(self, batch: Batch, times: StageTimes) -> list[Prediction]:
        t0 = time.perf_counter()
        texts = [t.text for t in batch.tickets]
        predictions = self.model.predict(texts) if texts else []
        times.model += time.perf_counter() - t0
        return predictions

    def _start_pool(self) -> multiprocessing.pool.Pool:
        # forkserver: workers do not inherit the parent's threads or signal handlers; the
        # preload imports scikit-learn once for all of them.
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["ticketclf.pipeline"])
        self._pool = ctx.Pool(self.workers, initializer=_init_worker,
                              initargs=(str(self.model_dir),))
        return self._pool

    @staticmethod
    def _collect(
        pending: deque[tuple[Batch, AsyncResult[list[Prediction]]]], times: StageTimes
    ) -> tuple[Batch, list[Prediction]]:
        batch, handle = pending.popleft()
        t0 = time.perf_counter()
        preds = handle.get()
        times.model += time.perf_counter() - t0
        return batch, preds

    def close(self) -> None:
        """Stop the workers (at once: on success they are idle, on failure we are leaving)."""
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None


def _timed(batches: Iterable[Batch], times: StageTimes) -> Iterator[Batch]:
    it = iter(batches)
    while True:
        t0 = time.perf_counter()
        batch = next(it, None)
        times.read += time.perf_counter() - t0
        if batch is None:
            return
        yield batch


def decide(
    tickets: Sequence[Ticket],
    predictions: Sequence[Prediction],
    thresholds: Thresholds,
    escalator: Escalator | None = None,
) -> list[Decision]:
    """One decision per ticket: confident ones stay with the model; uncertain ones go to the
    escalator when there is one, and are flagged for review when there is not."""
    decisions = [Decision(p, "model", False, False) for p in predictions]
    uncertain = [i for i, p in enumerate(predictions) if thresholds.uncertain(p)]
    if escalator is not None and uncertain:
        resolved = escalator.resolve([(tickets[i], predictions[i]) for i in uncertain])
        for i, d in zip(uncertain, resolved, strict=True):
            decisions[i] = d
    else:
        for i in uncertain:
            decisions[i] = Decision(predictions[i], "model", False, True)
    return decisions


def classify_batches(
    batches: Iterable[Batch],
    predictor: Predictor,
    thresholds: Thresholds,
    escalator: Escalator | None = None,
    times: StageTimes | None = None,
) -> Iterator[ClassifiedBatch]:
    """Results in input order, one per ticket; rejects pass through alongside, and each
    batch's drift counts (drift.py) from the local model's answers before escalation."""
    times = times if times is not None else StageTimes()
    version = predictor.model.version
    vocabulary = WordVocabulary.of(predictor.model.vectorizer)
    card_thresholds = Thresholds.from_model(predictor.model).by_head
    for batch, predictions in predictor.map(batches, times):
        drift = count_batch(vocabulary, card_thresholds, [t.text for t in batch.tickets],
                            predictions)
        t0 = time.perf_counter()
        decisions = decide(batch.tickets, predictions, thresholds, escalator)
        times.llm += time.perf_counter() - t0
        results = []
        for ticket, d in zip(batch.tickets, decisions, strict=True):
            p = d.prediction
            results.append(Result(
                ticket=ticket,
                prediction=p,
                priority=priority_for(p.label("category"), p.label("sentiment"), ticket.text),
                decided_by=d.decided_by,  # type: ignore[arg-type]
                cached=d.cached,
                needs_review=d.needs_review,
                model_version=version,
            ))
        yield ClassifiedBatch(results, batch.rejects, drift)
