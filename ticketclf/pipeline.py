"""classify_batches: batches of tickets → local model (worker processes, order kept) →
escalation of the uncertain ones (when an escalator is given) → priority → results."""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
import warnings
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from queue import SimpleQueue
from typing import NoReturn, Protocol

from . import interrupts
from .drift import DriftCounts, WordVocabulary, count_batch
from .errors import WorkerDied
from .io.readers import Batch
from .model import TicketModel
from .model.language import UNDETERMINED
from .priority import PriorityRules
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

log = logging.getLogger("ticketclf.pipeline")

# What one worker adds to the process tree: it is forked from the process that holds the
# model, so the model's pages are shared copy-on-write; this covers a batch in flight and the
# pages the worker dirties (see bench/RESULTS.md). Used to bound --workers by memory.
WORKER_MEMORY_BYTES = 192 << 20
IN_FLIGHT_PER_WORKER = 2  # one being predicted, one queued: workers never wait for work


def available_memory() -> int | None:
    """Bytes this process tree may still use: MemAvailable, or less under a cgroup limit."""
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            found.append(max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def bounded_workers(requested: int, per_worker: int = WORKER_MEMORY_BYTES) -> int:
    """`requested`, lowered to the CPUs this process may run on and to the workers that fit
    in the available memory, with one warning when it is lowered."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else os.cpu_count() or 1
    memory = available_memory()
    by_memory = max(1, memory // per_worker) if memory is not None else requested
    workers = max(1, min(requested, cpus, by_memory))
    if workers < requested:
        why = f"{cpus} CPUs" if workers == cpus else \
            f"{(memory or 0) / 2**30:.1f} GiB available at {per_worker >> 20} MiB a worker"
        log.warning(f"workers lowered from {requested} to {workers}: {why}",
                    extra={"event": "workers_lowered", "requested": requested,
                           "workers": workers, "cpus": cpus, "available_bytes": memory})
    return workers


@dataclass(slots=True)
class Scored:
    """The model's side of one batch: a prediction per ticket, the priority it implies, and
    the batch's drift counts (computed where the model ran, in a worker when there are
    workers, so the parent, which reads and writes for all of them, does not)."""

    predictions: list[Prediction]
    priorities: list[str]
    drift: DriftCounts


@dataclass(frozen=True)
class Scorer:
    """Scores batches of texts with one model; built once, before workers fork, so each
    worker inherits the compiled priority rules and the vocabulary instead of rebuilding them."""

    model: TicketModel
    rules: PriorityRules
    vocabulary: WordVocabulary | None
    card_thresholds: dict[str, float]  # drift counts low confidence against the card's

    @classmethod
    def of(cls, model: TicketModel) -> Scorer:
        return cls(model, model.taxonomy.priority, WordVocabulary.of(model.vectorizer),
                   Thresholds.from_model(model).by_head)

    def __call__(self, texts: list[str]) -> Scored:
        predictions = self.model.predict(texts) if texts else []
        return Scored(predictions,
                      [self.rules.priority(p.labels, text)
                       for p, text in zip(predictions, texts, strict=True)],
                      count_batch(self.vocabulary, self.card_thresholds, texts, predictions))


class _Failed:
    """What a worker sends back instead of predictions when the model raised."""

    def __init__(self, error: str) -> None:
        self.error = error


def _serve(scorer: Scorer, tasks: Connection, results: Connection) -> None:
    """A worker's life: predict each batch of texts it is sent, in order, until EOF.

    A thread drains the task pipe into a queue, so the parent's send never waits for the
    model, and parent and worker can never both block writing to each other."""
    queue: SimpleQueue[bytes | None] = SimpleQueue()

    def drain() -> None:
        try:
            while True:
                queue.put(tasks.recv_bytes())
        except (EOFError, OSError):  # the parent closed the pipe, or died
            queue.put(None)

    threading.Thread(target=drain, daemon=True).start()
    while (message := queue.get()) is not None:
        texts = pickle.loads(message)
        try:
            reply: Scored | _Failed = scorer(texts)
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
            reply = _Failed(f"{type(exc).__name__}: {exc}")
        results.send(reply)


@dataclass
class _Worker:
    pid: int
    tasks: Connection  # parent -> worker: pickled lists of texts
    results: Connection  # worker -> parent: predictions; EOF when the worker is gone
    done: deque[Scored] = field(default_factory=deque)
    in_flight: int = 0


_RUN_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _fork_worker(scorer: Scorer) -> _Worker:
    tasks_r, tasks_w = multiprocessing.Pipe(duplex=False)
    results_r, results_w = multiprocessing.Pipe(duplex=False)
    # A SIGTERM or SIGINT whose Python handler ran inside os.fork() would run it in an
    # at-fork callback, where CPython swallows what it raises and the rest of the callback
    # (logging's lock release) is skipped. The signals are blocked here across the fork; a
    # thread that does not block them (the LLM's) may still take one, so the handler only
    # remembers it until the fork is done, and the parent raises it after.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _RUN_SIGNALS)
    try:
        with interrupts.only_remembered(), warnings.catch_warnings():
            # Python >= 3.12 warns when other threads exist (the LLM's, a progress bar's): a
            # lock one of them holds stays locked in the child. The child takes none of
            # theirs: it predicts, and talks only over its own two pipes.
            warnings.filterwarnings("ignore", r"This process .* is multi-threaded",
                                    DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides how a run ends
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    if pid == 0:  # the worker: never returns, never runs the parent's exit handlers
        code = 0
        try:
            # Only its own pipe ends stay open: a parent's output file lock, its sockets and
            # the other workers' pipes must not outlive the parent because of us.
            keep = sorted((tasks_r.fileno(), results_w.fileno()))
            os.closerange(3, keep[0])
            os.closerange(keep[0] + 1, keep[1])
            os.closerange(keep[1] + 1, _max_fd())
            _serve(scorer, tasks_r, results_w)
        except BaseException:  # noqa: BLE001 - nothing to unwind into: the parent sees EOF
            code = 70
        os._exit(code)
    tasks_r.close()
    results_w.close()
    interrupts.check()  # a signal that came during the fork ends the run now
    return _Worker(pid, tasks_w, results_r)


def _max_fd() -> int:
    try:
        return max(1024, os.sysconf("SC_OPEN_MAX"))
    except (ValueError, OSError):
        return 65536


class Predictor:
    """Runs the model over batches in order, in worker processes when there is more than one
    batch and more than one worker. In-flight batches are bounded, so memory is too.

    Workers are forked from this process after the model is loaded, so they share its pages
    instead of each loading a copy, and start in milliseconds. A worker that dies (the OOM
    killer's SIGKILL) ends the run with WorkerDied at once, instead of its batch being lost."""

    def __init__(self, model: TicketModel, model_dir: Path, workers: int) -> None:
        self.model = model
        self.model_dir = model_dir
        self.scorer = Scorer.of(model)
        self.workers = bounded_workers(max(1, workers))
        self._pool: list[_Worker] = []

    def map(
        self, batches: Iterable[Batch], times: StageTimes
    ) -> Iterator[tuple[Batch, Scored]]:
        """(batch, its scores) in input order. The first batch is always predicted here, so
        small inputs never pay for starting processes and a pipe's first rows come out at once;
        from the second batch on, worker processes take over when there is more than one."""
        pending: deque[tuple[Batch, _Worker]] = deque()
        try:
            for n, batch in enumerate(_timed(batches, times)):
                if n == 0 or self.workers == 1:
                    yield batch, self._predict_here(batch, times)
                    continue
                pool = self._pool or self._start_pool()
                worker = pool[(n - 1) % len(pool)]  # round robin: each worker answers in order
                while worker.in_flight >= IN_FLIGHT_PER_WORKER:
                    yield self._collect(pending, times)
                self._send(worker, batch)
                pending.append((batch, worker))
                # Yield what is done (keeps a slow pipe flowing); block only at the limit.
                while pending and self._ready(pending[0][1]):
                    yield self._collect(pending, times)
            while pending:
                yield self._collect(pending, times)
        finally:
            self.close()

    def _predict_here(self, batch: Batch, times: StageTimes) -> Scored:
        t0 = time.perf_counter()
        scored = self.scorer([t.text for t in batch.tickets])
        times.model += time.perf_counter() - t0
        return scored

    def _start_pool(self) -> list[_Worker]:
        # Frozen objects are skipped by the garbage collector, so its passes do not write to
        # (and so copy) the pages of the model every worker shares with us.
        gc.freeze()
        try:
            self._pool = [_fork_worker(self.scorer) for _ in range(self.workers)]
        finally:
            gc.unfreeze()
        return self._pool

    def _send(self, worker: _Worker, batch: Batch) -> None:
        try:
            worker.tasks.send_bytes(pickle.dumps([t.text for t in batch.tickets],
                                                 protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:  # EPIPE: it is gone
            self._died(worker)
        worker.in_flight += 1

    def _ready(self, worker: _Worker) -> bool:
        """Whether `worker` has answered its oldest batch (reads what has arrived)."""
        while not worker.done and worker.results.poll():
            self._receive(worker)
        return bool(worker.done)

    def _receive(self, worker: _Worker) -> None:
        try:
            reply = worker.results.recv()
        except (EOFError, OSError):
            self._died(worker)
        if isinstance(reply, _Failed):
            raise RuntimeError(f"model worker failed: {reply.error}")
        worker.done.append(reply)

    def _collect(
        self, pending: deque[tuple[Batch, _Worker]], times: StageTimes
    ) -> tuple[Batch, Scored]:
        batch, worker = pending.popleft()
        t0 = time.perf_counter()
        while not worker.done:
            # Wait on every busy worker, not only this one: a death anywhere ends the run now.
            busy = {w.results: w for w in self._pool if w.in_flight > len(w.done)}
            for conn in wait(list(busy)):
                self._receive(busy[conn])  # type: ignore[index]
        worker.in_flight -= 1
        times.model += time.perf_counter() - t0
        return batch, worker.done.popleft()

    def _died(self, worker: _Worker) -> NoReturn:
        pid, how = worker.pid, "exited"
        try:
            _, status = os.waitpid(pid, 0)
            if os.WIFSIGNALED(status):
                how = f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
            elif os.WIFEXITED(status):
                how = f"exited with status {os.WEXITSTATUS(status)}"
        except ChildProcessError:
            pass
        worker.pid = 0  # reaped
        raise WorkerDied(
            f"model worker {pid} {how} during the run; nothing was written",
            "out of memory? lower --workers or --batch-size, or give the job more memory",
        )

    def close(self) -> None:
        """Stop the workers at once (on success they are idle, on failure we are leaving)."""
        pool, self._pool = self._pool, []
        for worker in pool:
            worker.tasks.close()
            worker.results.close()
            if worker.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
        for worker in pool:
            if worker.pid:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(worker.pid, 0)


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
    rules = predictor.model.taxonomy.priority  # cues compiled when the card was read
    for batch, scored in predictor.map(batches, times):
        t0 = time.perf_counter()
        decisions = decide(batch.tickets, scored.predictions, thresholds, escalator)
        times.llm += time.perf_counter() - t0
        results = []
        for ticket, d, local, priority in zip(batch.tickets, decisions, scored.predictions,
                                              scored.priorities, strict=True):
            p = d.prediction
            if p != local:  # the LLM changed the labels: their priority, not the model's
                priority = rules.priority(p.labels, ticket.text)
            results.append(Result(
                ticket=ticket,
                prediction=p,
                priority=priority,
                decided_by=d.decided_by,  # type: ignore[arg-type]
                cached=d.cached,
                needs_review=d.needs_review,
                model_version=version,
            ))
        yield ClassifiedBatch(results, batch.rejects, scored.drift)
