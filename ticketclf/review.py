"""The review worklist: from a classify output and the answer cache, the tickets a person should
label, most valuable first.

A ticket is listed for any of: `needs_review` (the run could not settle it), `disagree` (the
LLM's answer differs from the local model's), `low_confidence` (the local model is below its
card's threshold on a head) and `unseen_language` (a `language` column names a language the
model was not trained on). The local model's answer is recomputed with the model given (the
output keeps only the final answer); the LLM's comes from the cache (any backend or model that
answered in this model's taxonomy, the newest), else from the output's own columns where the
LLM decided.

Order: the value of a label, share(category) × (1 − c_category × c_sentiment): how common the
ticket's kind is in this output (its final category) times the chance the local model has at
least one head wrong. A label teaches most where the model is unsure about something it sees
often. Ties keep input order.

The worklist's `category` and `sentiment` columns are empty for the reviewer; filled in, the
file is training data for `ticketclf learn --labels` as it stands. It holds the original
ticket text, as the classify output does: the same privacy class, for people on the same
machine, never for the cache or a model.
"""

from __future__ import annotations

import csv
import hashlib
import heapq
import io
import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .cache import AnswerCache, CachedRecord
from .errors import UsageError
from .io.inputs import Inputs
from .io.readers import ReadOptions, input_format_from_name
from .io.sources import STDIN
from .io.writers import (
    AtomicFile,
    gzip_if_named,
    json_line,
    neutralise_formula,
    output_format,
    restore_formula,
)
from .llm.prompt import Prompt
from .llm.redact import redact
from .model import TicketModel
from .pipeline import Thresholds
from .schema import Ticket

log = logging.getLogger("ticketclf.review")

DEFAULT_LIMIT = 1000
MAX_LIMIT = 1_000_000
# Languages a model without a `languages` entry in its card was trained on.
DEFAULT_LANGUAGES = ("en",)
WORKLIST_COLUMNS = (
    "id", "text", "reasons", "value", "model_category", "model_category_confidence",
    "model_sentiment", "model_sentiment_confidence", "llm_category", "llm_sentiment",
    "llm_confidence", "decided_by", "language", "category", "sentiment")


@dataclass(frozen=True)
class ReviewSpec:
    output: str  # the classify output (a path: it is read twice)
    worklist: str
    cache_dir: Path | None = None
    limit: int = DEFAULT_LIMIT
    read: ReadOptions = field(default_factory=ReadOptions)


@dataclass
class ReviewReport:
    rows: int = 0
    listed: int = 0  # tickets with at least one reason
    written: int = 0  # after --limit
    reasons: Counter[str] = field(default_factory=Counter)
    output_models: Counter[str] = field(default_factory=Counter)  # model_version column


@dataclass(frozen=True, slots=True)
class LLMView:
    category: str
    sentiment: str
    confidence: float


def _digest(text: str) -> str:
    return hashlib.sha256(redact(text).encode("utf-8", "surrogatepass")).hexdigest()


def _tickets(spec: ReviewSpec) -> Iterator[Ticket]:
    """The output's rows, texts as classify read them (a CSV's formula guard undone)."""
    if spec.output == STDIN:
        raise UsageError("review reads its input twice: give a file, not -")
    from_csv = input_format_from_name(spec.output) == "csv"
    with Inputs([spec.output], spec.read) as stream:
        for batch in stream.batches():
            for ticket in batch.tickets:
                if from_csv:
                    ticket.text = restore_formula(ticket.text)
                yield ticket


def _cached_answers(directory: Path | None, digests: set[str], prompt: Prompt
                    ) -> dict[str, LLMView]:
    """The newest answer in this taxonomy for each wanted text."""
    if directory is None or not directory.exists():
        return {}
    best: dict[str, tuple[float, LLMView]] = {}
    with AnswerCache(directory) as cache:
        for record in cache.records():
            if record.text_sha256 not in digests or not _in_taxonomy(record, prompt):
                continue
            v = record.value
            confidence = v.get("confidence")
            view = LLMView(str(v.get("category", "")), str(v.get("sentiment", "")),
                           float(confidence) if isinstance(confidence, int | float) else 0.0)
            held = best.get(record.text_sha256)
            if held is None or record.at > held[0]:
                best[record.text_sha256] = (record.at, view)
    return {d: view for d, (_at, view) in best.items()}


def _in_taxonomy(record: CachedRecord, prompt: Prompt) -> bool:
    recorded = record.value.get("taxonomy_hash")
    return recorded == prompt.taxonomy.hash if recorded else record.prompt_hash == prompt.hash


def _from_output(row: Mapping[str, Any]) -> LLMView | None:
    """Where the LLM decided and the cache no longer has it: the output's columns."""
    if str(row.get("decided_by", "")) != "llm":
        return None
    try:
        confidence = float(row.get("category_confidence") or 0.0)
    except ValueError:
        confidence = 0.0
    return LLMView(str(row.get("category", "")), str(row.get("sentiment", "")), confidence)


def build_worklist(spec: ReviewSpec, model: TicketModel) -> ReviewReport:
    """Write the worklist; returns what was counted."""
    report = ReviewReport()
    # Pass 1: how common each kind is, and which texts to look up in the cache.
    kinds: Counter[str] = Counter()
    digests: set[str] = set()
    for ticket in _tickets(spec):
        report.rows += 1
        kinds[str(ticket.row.get("category", ""))] += 1
        digests.add(_digest(ticket.text))
        report.output_models[str(ticket.row.get("model_version", ""))] += 1
    llm = _cached_answers(spec.cache_dir, digests, Prompt(model.taxonomy))
    del digests
    thresholds = Thresholds.from_model(model)
    languages = set(model.card.get("languages") or DEFAULT_LANGUAGES)
    # Pass 2: the local model's answers and the reasons; the best `limit` kept in a heap.
    heap: list[tuple[float, int, dict[str, Any]]] = []
    batch: list[tuple[int, Ticket]] = []

    def flush() -> None:
        predictions = model.predict([t.text for _i, t in batch])
        for (position, ticket), local in zip(batch, predictions, strict=True):
            row = ticket.row
            answer = llm.get(_digest(ticket.text)) or _from_output(row)
            language = str(row.get("language") or "")
            reasons = [name for name, hit in (
                ("needs_review", str(row.get("needs_review", "")).lower() == "true"),
                ("disagree", answer is not None and (
                    answer.category != local.label("category")
                    or answer.sentiment != local.label("sentiment"))),
                ("low_confidence", thresholds.uncertain(local)),
                ("unseen_language", bool(language) and language not in languages),
            ) if hit]
            if not reasons:
                continue
            report.listed += 1
            report.reasons.update(reasons)
            c_cat, c_sent = local.confidence("category"), local.confidence("sentiment")
            share = kinds[str(row.get("category", ""))] / report.rows
            value = share * (1 - c_cat * c_sent)
            item = {
                "id": ticket.id, "text": ticket.text, "reasons": ";".join(reasons),
                "value": round(value, 6),
                "model_category": local.label("category"),
                "model_category_confidence": round(c_cat, 4),
                "model_sentiment": local.label("sentiment"),
                "model_sentiment_confidence": round(c_sent, 4),
                "llm_category": answer.category if answer else "",
                "llm_sentiment": answer.sentiment if answer else "",
                "llm_confidence": round(answer.confidence, 4) if answer else "",
                "decided_by": str(row.get("decided_by", "")), "language": language,
                "category": "", "sentiment": ""}
            entry = (value, -position, item)
            if len(heap) < spec.limit:
                heapq.heappush(heap, entry)
            elif entry[:2] > heap[0][:2]:
                heapq.heapreplace(heap, entry)
        batch.clear()

    for position, ticket in enumerate(_tickets(spec)):
        batch.append((position, ticket))
        if len(batch) >= spec.read.batch_size:
            flush()
    flush()
    chosen = [item for *_key, item in sorted(heap, key=lambda e: (-e[0], -e[1]))]
    report.written = len(chosen)
    _write(spec.worklist, chosen)
    return report


def _write(path: str, items: list[dict[str, Any]]) -> None:
    fmt = output_format(path, None)
    with ExitStack() as stack:
        raw = stack.enter_context(AtomicFile(Path(path)))
        stream: IO[bytes] = gzip_if_named(raw, path)
        if stream is not raw:
            stack.callback(stream.close)  # before the rename: the gzip trailer lands
        text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
        if fmt == "csv":
            writer = csv.writer(text, lineterminator="\r\n")
            writer.writerow(WORKLIST_COLUMNS)
            writer.writerows([neutralise_formula(str(item[c])) for c in WORKLIST_COLUMNS]
                             for item in items)
        else:
            for item in items:
                text.write(json_line({c: item[c] for c in WORKLIST_COLUMNS}))
        text.flush()
        text.detach()


def default_worklist(output: str) -> str:
    path = Path(output)
    name = path.name
    for suffix in reversed(path.suffixes):
        name = name.removesuffix(suffix)
    return str(path.with_name(f"{name}.worklist.csv"))
