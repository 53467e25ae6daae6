"""One classify run: open inputs, stream them through the pipeline, write the outputs
atomically, count everything. The CLI builds a ClassifyJob and calls run_classify."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import sys
import time
import uuid
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TextIO

from . import interrupts
from .drift import DriftCounts, TrainingPrior
from .errors import DataError, UsageError
from .io.inputs import Inputs
from .io.readers import Batch, ReadOptions
from .io.sources import STDIN
from .io.writers import (
    RejectWriter,
    ResultWriter,
    gzip_if_named,
    output_file,
    output_format,
    output_format_from_name,
    stdout_stream,
)
from .llm.escalator import EscalationStats
from .model import TicketModel
from .pipeline import Escalator, Predictor, StageTimes, Thresholds, classify_batches
from .schema import HEADS, Reject, Result
from .taxonomy import DEFAULT_TAXONOMY, Taxonomy

log = logging.getLogger("ticketclf.run")


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count`: the rows whose key hashes to `index` (0-based)."""

    index: int
    count: int

    @classmethod
    def parse(cls, spec: str) -> Shard:
        try:
            i, n = (int(part) for part in spec.split("/"))
        except ValueError:
            raise UsageError(f"bad --shard {spec!r}", "write it as I/N, e.g. 0/4") from None
        if n < 1 or not 0 <= i < n:
            raise UsageError(f"bad --shard {spec!r}", "I counts from 0 and must be below N")
        return cls(i, n)

    def keeps(self, key: str) -> bool:
        digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.count == self.index

    def filter(self, batch: Batch) -> Batch:
        return Batch(
            [t for t in batch.tickets if self.keeps(t.id)],
            [r for r in batch.rejects if self.keeps(f"{r.source}:{r.line}")],
        )


@dataclass
class ClassifyJob:
    inputs: list[str]
    output: str | None = None
    rejects: str | None = None
    input_format: str | None = None
    output_format: str | None = None
    read: ReadOptions = field(default_factory=ReadOptions)
    threshold: float | None = None
    workers: int = 1
    shard: Shard | None = None
    max_reject_rate: float = 0.05
    dry_run: bool = False  # read, predict and count, but write neither output nor rejects


# Upper bounds of the confidence histogram buckets (the last bucket, +Inf, holds the rest).
CONFIDENCE_BUCKETS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


@dataclass
class ConfidenceHistogram:
    """Final confidences of one head, counted per bucket: cheap enough to fill row by row."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(CONFIDENCE_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, confidence: float) -> None:
        self.counts[bisect_left(CONFIDENCE_BUCKETS, confidence)] += 1  # bucket: value <= bound
        self.total += confidence


@dataclass
class RunReport:
    """What a run did, filled in as it goes, so a failed or interrupted run still reports."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started_at: float = field(default_factory=time.time)
    success: bool = False
    exit_code: int | None = None
    model_version: str = ""
    taxonomy: Taxonomy = DEFAULT_TAXONOMY  # the model's: its labels are the metrics' values
    output: str = ""
    rejects_path: str = ""
    rows_in: int = 0
    classified: int = 0
    rejected: int = 0
    categories: Counter[str] = field(default_factory=Counter)
    sentiments: Counter[str] = field(default_factory=Counter)
    priorities: Counter[str] = field(default_factory=Counter)
    decided_by: Counter[str] = field(default_factory=Counter)
    needs_review: int = 0
    cached: int = 0
    seconds: float = 0.0
    stages: StageTimes = field(default_factory=StageTimes)
    confidence: dict[str, ConfidenceHistogram] = field(
        default_factory=lambda: {head: ConfidenceHistogram() for head in HEADS})
    llm: EscalationStats = field(default_factory=EscalationStats)  # empty when it is off
    prior: TrainingPrior = field(default_factory=TrainingPrior)  # the model's, for drift
    drift: DriftCounts = field(default_factory=DriftCounts)

    @property
    def reject_rate(self) -> float:
        return self.rejected / self.rows_in if self.rows_in else 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows_in / self.seconds if self.seconds > 0 else 0.0


def default_output(first_input: str, fmt: str | None) -> str:
    if first_input == STDIN:
        return STDIN
    path = Path(first_input)
    name = path.name
    for suffix in reversed(path.suffixes):
        name = name.removesuffix(suffix)
    ext = fmt or output_format_from_name(first_input) or "csv"
    return str(path.with_name(f"{name}.classified.{ext}"))


def default_rejects(output: str, first_input: str) -> str:
    if output != STDIN:
        return f"{output}.rejects.jsonl"
    if first_input != STDIN:
        path = Path(first_input)
        return str(path.with_name(f"{path.name.split('.')[0]}.rejects.jsonl"))
    return "stdin.rejects.jsonl"


def run_classify(
    job: ClassifyJob,
    model: TicketModel,
    model_dir: Path,
    escalator: Escalator | None = None,
    on_progress: Callable[[int, int | None], None] | None = None,
    report: RunReport | None = None,
) -> RunReport:
    """Classify every input row into the output or the rejects file; returns the counts.

    Pass `report` to keep the counts when the run fails or is interrupted. Raises DataError
    (after writing both files) when the reject rate is over the limit.
    """
    started = time.perf_counter()
    report = report if report is not None else RunReport()
    output, rejects_path = resolve_outputs(job)
    out_fmt = output_format(output, job.output_format)
    report.output, report.rejects_path = output, rejects_path
    report.model_version, report.taxonomy = model.version, model.taxonomy
    report.prior = TrainingPrior.from_card(model.card)
    log.info("run started", extra={"event": "run_started", "run_id": report.run_id,
                                   "inputs": job.inputs, "output": output,
                                   "model_version": model.version})
    try:
        with ExitStack() as stack:
            inputs = stack.enter_context(
                Inputs(job.inputs, job.read, job.input_format, same_columns=True))
            out_stream: IO[bytes]
            rej_stream: IO[bytes]
            if job.dry_run:
                out_stream = rej_stream = stack.enter_context(open(os.devnull, "wb"))
            else:
                out_stream = _open_output(stack, output)
                rej_stream = stack.enter_context(output_file(Path(rejects_path)))
            reject_writer = RejectWriter(rej_stream)
            predictor = Predictor(model, model_dir, job.workers)
            stack.callback(predictor.close)
            batches: Iterator[Batch] = inputs.batches()
            if job.shard is not None:
                batches = map(job.shard.filter, batches)
            thresholds = Thresholds.from_model(model, job.threshold)
            writer: ResultWriter | None = None
            for classified in classify_batches(batches, predictor, thresholds, escalator,
                                               report.stages):
                interrupts.check()
                t0 = time.perf_counter()
                if writer is None:
                    writer = ResultWriter(out_stream, out_fmt, inputs.columns or [])
                writer.write(classified.results)
                reject_writer.write(classified.rejects)
                report.stages.write += time.perf_counter() - t0
                _count(report, classified.results, classified.rejects, classified.drift)
                if on_progress is not None:
                    on_progress(inputs.bytes_read, inputs.total_bytes)
            if writer is None:  # no rows at all: still a valid, header-only output
                writer = ResultWriter(out_stream, out_fmt, inputs.columns or [])
            writer.detach()
    finally:
        report.seconds = time.perf_counter() - started
    log.info("run finished", extra={
        "event": "run_finished", "run_id": report.run_id, "rows_in": report.rows_in,
        "classified": report.classified, "rejected": report.rejected,
        "seconds": round(report.seconds, 3), "stages": report.stages.as_dict()})
    if report.rejected and report.reject_rate > job.max_reject_rate:
        raise DataError(
            f"{report.rejected} of {report.rows_in} rows rejected ({report.reject_rate:.1%}), "
            f"above --max-reject-rate {job.max_reject_rate:.1%}; see {rejects_path}",
            "fix the input or raise --max-reject-rate",
        )
    report.success = True
    return report


def resolve_outputs(job: ClassifyJob) -> tuple[str, str]:
    """The output and rejects paths of a job, refused (UsageError) when empty, when rejects
    would go to stdout, or when any two of inputs and outputs are one file."""
    if job.output == "":
        raise UsageError("-o is empty", "give an output path, or - for stdout")
    if job.rejects == "":
        raise UsageError("--rejects is empty", "give a path, or leave it out for the default")
    if job.rejects == STDIN:
        raise UsageError("--rejects - is not supported: rejects go to a file",
                         "use -o - for the results on stdout and --rejects PATH for the rejects")
    output = job.output if job.output is not None else default_output(job.inputs[0],
                                                                      job.output_format)
    rejects = job.rejects or default_rejects(output, job.inputs[0])
    _refuse_same_files(job.inputs, output, rejects)
    return output, rejects


def _refuse_same_files(inputs: list[str], output: str, rejects: str) -> None:
    """Writing to an input destroys it (and `-o -` appended to the input reads its own rows
    forever); output and rejects in one file lose the rejects. Compared by inode, so a
    symlink, a hard link or another spelling of the path is caught too."""
    read: dict[tuple[object, ...], str] = {}
    for name in inputs:
        key = _file_key(name, sys.stdin)
        if key is not None and key[0] == "inode":  # a missing input is exit 66, later
            read.setdefault(key, name)
    out_key = _file_key(output, sys.stdout)
    for flag, name, key in (("-o", output, out_key),
                            ("--rejects", rejects, _file_key(rejects, sys.stdout))):
        if key in read:
            shown = "stdout" if name == STDIN else name
            source = "(stdin)" if read[key] == STDIN else read[key]
            raise UsageError(f"{flag} {shown} is the input {source}: writing it would destroy "
                             "the input", "choose another output path")
    if out_key is not None and out_key == _file_key(rejects, sys.stdout):
        raise UsageError(f"-o {output} and --rejects {rejects} are the same file",
                         "give the rejects their own path")


def _file_key(name: str, std: TextIO) -> tuple[object, ...] | None:
    """Identity of the file behind a path (or `-`: stdin / stdout when redirected to a file);
    None for character devices (/dev/null takes any number of writers) and unknowables."""
    try:
        st = os.stat(name) if name != STDIN else os.fstat(std.fileno())
    except FileNotFoundError:
        return ("path", os.path.realpath(name))  # not there yet: its resolved path
    except (OSError, AttributeError, ValueError):  # e.g. stdout captured by a test runner
        return None
    if stat.S_ISCHR(st.st_mode) or (name == STDIN and not stat.S_ISREG(st.st_mode)):
        return None
    return ("inode", st.st_dev, st.st_ino)


def _open_output(stack: ExitStack, output: str) -> IO[bytes]:
    """stdout as it is; a path through an atomic file (gzip when the name says so), or
    straight into a device or FIFO."""
    if output == STDIN:
        return stdout_stream()
    raw = stack.enter_context(output_file(Path(output)))
    stream = gzip_if_named(raw, output)
    if stream is not raw:
        stack.callback(stream.close)  # runs before the atomic rename: the gzip trailer lands
    return stream


def _count(report: RunReport, results: list[Result], rejects: list[Reject],
           drift: DriftCounts) -> None:
    report.rows_in += len(results) + len(rejects)
    report.drift.add(drift)
    report.classified += len(results)
    report.rejected += len(rejects)
    for r in results:
        p = r.prediction
        report.categories[p.label("category")] += 1
        report.sentiments[p.label("sentiment")] += 1
        report.priorities[r.priority] += 1
        report.decided_by[r.decided_by] += 1
        report.needs_review += r.needs_review
        report.cached += r.cached
        for head, histogram in report.confidence.items():
            histogram.observe(p.confidence(head))

