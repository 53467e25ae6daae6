"""Learning from what was paid for: the next model is trained on BASE's own training data,
the cached LLM answers and the labels people gave, then gated against BASE on held-out data
before it may be promoted.

Training rows, by source:
- base: BASE's training set, shipped beside it (training.csv.gz; models/build_default.py
  writes the default model's, every learned model carries its own);
- llm: cached answers (redacted text) in BASE's taxonomy, with the LLM's confidence at least
  `min_llm_confidence`, one per text (the most confident, then the newest); their category
  only, unless `llm_sentiment`;
- human: filled-in worklists or any labelled CSV/JSONL; per head, a person's label beats the
  LLM's for the same (redacted) text, and a later file beats an earlier one.
Every learned text is redacted, so a model directory holds the same class of data as the
cache. A stable hash of the text holds back `holdout_percent` of the new rows: never trained
on, they show whether NEW is better on the new data; BASE's own held-out set
(holdout.csv.gz) shows that it is no worse on the old.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import logging
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .cache import AnswerCache, CachedRecord
from .errors import ConfigError, DataError, OutputError, UsageError
from .io.labelled import read_labelled
from .io.readers import ReadOptions, input_format_from_name
from .io.writers import AtomicFile, restore_formula
from .llm.base import UNKNOWN_CATEGORY
from .llm.prompt import Prompt
from .llm.redact import redact
from .model.store import CARD_FILE, read_card, resolve_model_dir, write_card
from .taxonomy import Taxonomy

TRAINING_FILE = "training.csv.gz"
HOLDOUT_FILE = "holdout.csv.gz"
HEADS = ("category", "sentiment")
COLUMNS = ("text", "category", "sentiment", "source", "style")
LLM_SOURCE = "llm"  # the source (and style) of rows that are LLM answers
HUMAN_SOURCE = "human"  # ... and of people's labels
# Gemini's stated confidence is above 0.85 for most answers it gets right; below 0.8 it is
# hedging, and a wrong label taught to the model costs more than a missing one.
DEFAULT_MIN_LLM_CONFIDENCE = 0.8
DEFAULT_HOLDOUT_PERCENT = 20
# Macro-F1 NEW may lose on BASE's held-out data, per head: 0.005 is about two tickets of the
# shipped model's 416, the noise of retraining on a few more rows.
DEFAULT_TOLERANCE = 0.005
HOLDOUT_SALT = "ticketclf-learn-holdout-1"  # changing it reshuffles which new rows are held back

log = logging.getLogger("ticketclf.learn")


@dataclass(frozen=True)
class LearnSpec:
    base: Path  # a model directory (resolved)
    cache_dir: Path | None = None
    labels: Sequence[str] = ()  # files or directories of labelled CSV/JSONL
    min_llm_confidence: float = DEFAULT_MIN_LLM_CONFIDENCE
    # The LLM's sentiment too, not only its category: measured on bench/flywheel.py, it cost
    # one-off tickets 1.7-2.1 points of sentiment macro-F1 (bench/RESULTS.md), so it is opt-in.
    llm_sentiment: bool = False
    holdout_percent: int = DEFAULT_HOLDOUT_PERCENT
    tolerance: float = DEFAULT_TOLERANCE
    read: ReadOptions = field(default_factory=ReadOptions)


@dataclass
class Row:
    text: str
    labels: dict[str, str]
    source: str
    # The writing style the row stands for (a channel, a public source; for new rows their
    # source): cross-validation holds out whole styles when it chooses the thresholds.
    style: str = ""

    def cells(self) -> list[str]:
        return [self.text, self.labels.get("category", ""), self.labels.get("sentiment", ""),
                self.source, self.style or self.source]


@dataclass
class Gate:
    """BASE against NEW, per head: macro-F1 on BASE's held-out data and on the new slice."""

    base_holdout: dict[str, dict[str, float]]  # head -> {"base": f1, "new": f1, "n": rows}
    new_slice: dict[str, dict[str, float]]
    tolerance: float

    @property
    def no_worse_on_base(self) -> bool:
        return bool(self.base_holdout) and all(
            s["new"] >= s["base"] - self.tolerance for s in self.base_holdout.values())

    @property
    def better_on_new(self) -> bool:
        """On the held-back new labels, the log-loss summed over heads is lower. A proper
        score rather than macro-F1: a slice of a few dozen tickets ties on labels far more often
        than it shows a gain (one ticket moves macro-F1 by points), while the probability NEW
        gives the right labels moves with every ticket. Regressions are BASE's held-out
        data's to catch, with its hundreds of tickets."""
        if not self.new_slice:
            return False
        return sum(s["new_log_loss"] - s["base_log_loss"] for s in self.new_slice.values()) < 0

    @property
    def passed(self) -> bool:
        return self.no_worse_on_base and self.better_on_new

    def reasons(self) -> list[str]:
        """Why it did not pass (empty when it did)."""
        why = []
        if not self.base_holdout:
            why.append("BASE has no held-out data to compare on")
        for head, s in self.base_holdout.items():
            if s["new"] < s["base"] - self.tolerance:
                why.append(f"{head} macro-F1 on BASE's held-out data fell {s['base']:.3f} -> "
                           f"{s['new']:.3f} (tolerance {self.tolerance})")
        if not self.new_slice:
            why.append("no new labels were held back to show NEW is better (learn from more)")
        elif not self.better_on_new:
            why.append("NEW is not better than BASE on the held-back new labels (log-loss "
                       "summed over heads not lower): " + ", ".join(
                           f"{h} F1 {s['base']:.3f} -> {s['new']:.3f}, log-loss "
                           f"{s['base_log_loss']:.3f} -> {s['new_log_loss']:.3f}"
                           for h, s in self.new_slice.items()))
        return why

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "tolerance": self.tolerance,
                "base_holdout": self.base_holdout, "new_slice": self.new_slice,
                "reasons": self.reasons()}


@dataclass
class Learned:
    model_dir: Path
    card: dict[str, Any]
    gate: Gate


def is_holdout(text: str, percent: int) -> bool:
    digest = hashlib.sha256(f"{HOLDOUT_SALT}\0{text}".encode("utf-8", "surrogatepass"))
    return int.from_bytes(digest.digest()[:8], "big") % 100 < percent


def read_rows(path: Path, options: ReadOptions) -> list[Row]:
    """A training or held-out file of ours (text, labels per head, source, style)."""
    data = read_labelled([str(path)], options,
                         {**{h: h for h in HEADS}, "source": "source", "style": "style"})
    sources = data.labels.pop("source", None) or [""] * len(data)
    styles = data.labels.pop("style", None) or [""] * len(data)
    return [Row(text, {h: data.labels[h][i] for h in data.labels if data.labels[h][i]},
                sources[i] or "base", styles[i]) for i, text in enumerate(data.texts)]


def write_rows(path: Path, rows: Iterable[Row]) -> None:
    """gzip'd CSV, byte-identical for equal rows (mtime 0, no file name in the header)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(row.cells() for row in rows)
    with AtomicFile(path) as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0,
                                                 filename="") as gz:
        gz.write(text.getvalue().encode("utf-8"))


@dataclass
class Collected:
    """The new rows and what was left out of them, by reason."""

    rows: dict[str, Row] = field(default_factory=dict)  # by redacted text
    skipped: Counter[str] = field(default_factory=Counter)


def llm_rows(records: Iterable[CachedRecord], taxonomy: Taxonomy,
             labels: Mapping[str, Sequence[str]], min_confidence: float,
             heads: Sequence[str] = ("category",)) -> Collected:
    """Learnable answers: with text, in BASE's taxonomy, a category, confident enough; the
    best one per text, with the labels of `heads`."""
    prompt_hash = Prompt(taxonomy).hash
    best: dict[str, tuple[tuple[float, float, str], Row]] = {}
    out = Collected()
    for record in records:
        value = record.value
        if record.text is None:
            out.skipped["old_format"] += 1
            continue
        recorded = value.get("taxonomy_hash")
        if (recorded != taxonomy.hash) if recorded else (record.prompt_hash != prompt_hash):
            out.skipped["other_taxonomy"] += 1
            continue
        category, sentiment = value.get("category"), value.get("sentiment")
        if category == UNKNOWN_CATEGORY:
            out.skipped["unknown_category"] += 1
            continue
        if category not in labels.get("category", ()) or \
                sentiment not in labels.get("sentiment", ()):
            out.skipped["off_labels"] += 1
            continue
        confidence = value.get("confidence")
        if not isinstance(confidence, int | float) or confidence < min_confidence:
            out.skipped["low_confidence"] += 1
            continue
        rank = (float(confidence), record.at, record.key)
        held = best.get(record.text)
        if held is not None:
            out.skipped["duplicate_text"] += 1
            if held[0] >= rank:
                continue
        answer = {"category": str(category), "sentiment": str(sentiment)}
        best[record.text] = (rank, Row(record.text, {h: answer[h] for h in heads}, LLM_SOURCE))
    out.rows = {text: row for text, (_rank, row) in best.items()}
    return out


def label_files(names: Sequence[str]) -> list[str]:
    """Files as given; a directory stands for its .csv/.jsonl/.ndjson files (.gz too), sorted
    (a CronJob cannot glob); a missing one named with a trailing / for none."""
    files: list[str] = []
    for name in names:
        path = Path(name)
        if name.endswith("/") and not path.exists():
            continue  # a directory named as one (trailing /) that nobody has filled yet
        if path.is_dir():
            files += sorted(str(p) for p in path.iterdir()
                            if p.is_file() and input_format_from_name(p.name) is not None)
        else:
            files.append(name)
    return files


def human_rows(files: Sequence[str], options: ReadOptions,
               labels: Mapping[str, Sequence[str]]) -> Collected:
    """People's labels by redacted text; rows without any label are left out (the unfilled
    part of a worklist)."""
    out = Collected()
    for name in files:
        try:
            data = read_labelled([name], options, {h: h for h in HEADS})
        except DataError:
            # Most often a worklist nobody has filled in yet: nothing to learn, not a failure.
            log.warning("no labels in %s; skipped", name,
                        extra={"event": "labels_skipped", "file": name})
            out.skipped["files_without_labels"] += 1
            continue
        from_csv = input_format_from_name(name) == "csv"
        for head, column in data.labels.items():
            unknown = sorted(set(column) - {""} - set(labels.get(head, ())))
            if unknown:
                raise DataError(f"{name}: {head} labels outside the model's taxonomy: "
                                f"{', '.join(unknown[:10])}",
                                f"use one of {', '.join(labels.get(head, ()))}")
        for i, text in enumerate(data.texts):
            given = {h: v[i] for h, v in data.labels.items() if v[i]}
            if not given:
                out.skipped["unlabelled"] += 1
                continue
            key = redact(restore_formula(text) if from_csv else text)
            if key in out.rows:
                out.skipped["duplicate_text"] += 1
                out.rows[key].labels.update(given)
            else:
                out.rows[key] = Row(key, given, HUMAN_SOURCE)
    return out


def merge(llm: Collected, human: Collected) -> list[Row]:
    """Per text and head, a person's label beats the LLM's; in a stable order (by text)."""
    merged = {text: Row(text, dict(row.labels), row.source) for text, row in llm.rows.items()}
    for text, row in human.rows.items():
        if text in merged:
            merged[text].labels.update(row.labels)
            merged[text].source = HUMAN_SOURCE
        else:
            merged[text] = row
    return [merged[text] for text in sorted(merged)]


def gate(base_dir: Path, new_dir: Path, base_holdout: Sequence[Row], new_slice: Sequence[Row],
         tolerance: float) -> Gate:
    from .evaluate import evaluate_predictions
    from .model import load_model

    models = {"base": load_model(base_dir), "new": load_model(new_dir)}

    def scores(rows: Sequence[Row]) -> dict[str, dict[str, float]]:
        if not rows:
            return {}
        texts = [r.text for r in rows]
        truth = {h: [r.labels.get(h, "") for r in rows] for h in HEADS}
        truth = {h: v for h, v in truth.items() if any(v)}
        proba = {name: m.predict_proba(texts) for name, m in models.items()}
        by_model = {name: evaluate_predictions(proba[name], m.label_table(), truth)
                    for name, m in models.items()}
        return {head: {"base": round(by_model["base"][head]["macro_f1"], 4),
                       "new": round(by_model["new"][head]["macro_f1"], 4),
                       "n": by_model["base"][head]["n"],
                       **{f"{name}_log_loss": _log_loss(proba[name][head], m.labels(head),
                                                        truth[head])
                          for name, m in models.items()}}
                for head in by_model["base"] if head in by_model["new"]}

    return Gate(scores(base_holdout), scores(new_slice), tolerance)


def _log_loss(proba: Any, labels: Sequence[str], truth: Sequence[str]) -> float:
    """Mean -ln p(true label) over the rows with a label (p floored at 1e-6)."""
    import numpy as np

    index = {label: i for i, label in enumerate(labels)}
    picked = [float(proba[i, index[t]]) if t in index else 0.0
              for i, t in enumerate(truth) if t]
    return round(float(-np.mean(np.log(np.maximum(picked, 1e-6)))), 4)


def learn(spec: LearnSpec, output: Path,
          progress: Callable[[str], None] = lambda _msg: None) -> Learned:
    """Train NEW into `output` (a new directory) and gate it against BASE; promoting is the
    caller's (learn_into_models_dir)."""
    from .model.train import TrainSpec, train

    base_card = read_card(spec.base)
    labels = {h: list(v) for h, v in base_card.get("labels", {}).items()}
    base_training = _base_file(spec.base, TRAINING_FILE)
    base_holdout_path = spec.base / HOLDOUT_FILE
    base_holdout = read_rows(base_holdout_path, spec.read) if base_holdout_path.is_file() else []
    progress("reading the cache")
    taxonomy = Taxonomy.from_card(base_card)
    if spec.cache_dir is not None:
        with AnswerCache(spec.cache_dir) as cache:
            llm = llm_rows(cache.records(), taxonomy, labels, spec.min_llm_confidence,
                           HEADS if spec.llm_sentiment else ("category",))
    else:
        llm = Collected()
    human = human_rows(label_files(spec.labels), spec.read, labels)
    new_rows = merge(llm, human)
    if not new_rows:
        raise DataError("nothing new to learn from: no learnable cached answers and no labels",
                        "run classify with --llm and the same --cache-dir, or pass --labels")
    held = [r for r in new_rows if is_holdout(r.text, spec.holdout_percent)]
    trained_new = [r for r in new_rows if not is_holdout(r.text, spec.holdout_percent)]
    new_texts = {r.text for r in new_rows}
    # A base row with the same text as a new one gives way: the new label is the later word.
    base_rows = [r for r in read_rows(base_training, spec.read) if r.text not in new_texts]
    progress(f"training on {len(base_rows)} base + {len(trained_new)} new rows")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {output}: {exc.strerror}") from exc
    write_rows(output / TRAINING_FILE, [*base_rows, *trained_new])
    write_rows(output / HOLDOUT_FILE, [*base_holdout, *held])
    recipe = base_card.get("recipe") or {}
    card = train(TrainSpec(files=[output / TRAINING_FILE], any_labels=True,
                           folds=int(base_card.get("metrics", {}).get("folds", 3)),
                           target_precision=base_card.get("target_precision", 0.9),
                           style_column="style", unscored_styles=frozenset({LLM_SOURCE}),
                           encoder=bool(recipe.get("encoder"))),
                 output, progress=progress)
    card.pop("train_seconds", None)
    progress("comparing NEW with BASE on held-out data")
    verdict = gate(spec.base, output, base_holdout, held, spec.tolerance)
    by_source = Counter(r.source for r in trained_new)
    card["name"] = card["version"]
    card["lineage"] = {
        "base": {"version": base_card.get("version"), "name": base_card.get("name")},
        "rows": {"base": len(base_rows), LLM_SOURCE: by_source[LLM_SOURCE],
                 HUMAN_SOURCE: by_source[HUMAN_SOURCE]},
        "held_out": dict(sorted(Counter(r.source for r in held).items())),
        "llm_heads": list(HEADS if spec.llm_sentiment else ("category",)),
        "thresholds": {"min_llm_confidence": spec.min_llm_confidence,
                       "holdout_percent": spec.holdout_percent, "tolerance": spec.tolerance},
        "taxonomy_hash": taxonomy.hash,
        "skipped": {"llm": dict(sorted(llm.skipped.items())),
                    "human": dict(sorted(human.skipped.items()))},
        "gate": verdict.as_dict(),
    }
    card = write_card(output, card)
    return Learned(output, card, verdict)


def _base_file(base: Path, name: str) -> Path:
    path = base / name
    if not path.is_file():
        raise ConfigError(f"BASE model {base} has no {name} beside it: learn retrains on it",
                          f"use a model made by `make model` or `ticketclf learn`, or put its "
                          f"training data (text, category, sentiment columns) at {path}")
    return path


def learn_into_models_dir(spec: LearnSpec, models_dir: Path,
                          progress: Callable[[str], None] = lambda _msg: None) -> Learned:
    """Learn NEW beside the models in `models_dir` and promote it when the gate passes; the
    current model is adopted as BASE first when the directory has none."""
    from .model import versions

    if versions.read_pointer(models_dir) is None:
        base_version = str(read_card(spec.base)["version"])
        versions.add_model(models_dir, spec.base, base_version)
        versions.point_to(models_dir, base_version, "adopted as the first BASE")
    base = versions.current_model_dir(models_dir)
    staging = Path(tempfile.mkdtemp(prefix=".learning.", dir=models_dir))
    try:
        learned = learn(replace(spec, base=base), staging, progress)
        target = models_dir / learned.card["version"]
        if target.exists():  # learned before from the same inputs: the same bytes
            shutil.rmtree(staging)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    learned.model_dir = target
    if learned.gate.passed:
        versions.point_to(models_dir, target.name, "learned; passed the gate")
    return learned


def resolve_base(model: Path | None, models_dir: Path | None) -> Path:
    """BASE: --model; else the models directory's current model; else TICKETCLF_MODEL or the
    shipped model."""
    from .config import model_path
    from .model import versions

    if model is None and models_dir is not None and versions.read_pointer(models_dir):
        return versions.current_model_dir(models_dir)
    path = resolve_model_dir(model_path(model))
    if not (path / CARD_FILE).is_file():
        raise ConfigError(f"no model at {path}", "set --model or TICKETCLF_MODEL")
    return path


def check_outputs(output: Path | None, models_dir: Path | None) -> None:
    if (output is None) == (models_dir is None):
        raise UsageError("give -o NEW_MODEL or --models-dir DIR (exactly one)",
                         "-o writes a model directory; --models-dir learns and promotes in it")
