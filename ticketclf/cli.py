"""The command line: parse, build objects, call the library, render. No business logic."""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext as _nullcontext
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from . import __version__
from .config import model_path
from .errors import Interrupted, TicketclfError, exit_code_for
from .io.readers import ReadOptions
from .logs import LOG_FORMATS, setup_logging
from .model import TicketModel, load_model
from .model.store import resolve_model_dir
from .priority import priority_for
from .runner import ClassifyJob, RunReport, Shard, run_classify
from .schema import HEADS

app = typer.Typer(
    help="Classify telecom support tickets: category, sentiment and priority.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False)
log = logging.getLogger("ticketclf.cli")
F = TypeVar("F", bound=Callable[..., Any])

ModelOpt = Annotated[Path | None, typer.Option(
    "--model", envvar="TICKETCLF_MODEL", show_envvar=True,
    help="Model directory (or its card.json). Default: the shipped model.")]
LogFormatOpt = Annotated[str | None, typer.Option(
    "--log-format", envvar="TICKETCLF_LOG_FORMAT", show_envvar=True,
    help="json or console. Default: console on a terminal, json otherwise.")]
LogLevelOpt = Annotated[str, typer.Option(
    "--log-level", envvar="TICKETCLF_LOG_LEVEL", show_envvar=True, help="DEBUG, INFO, WARNING, ERROR.")]


class _State:
    debug = False


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ticketclf {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    _State.debug = debug


def handles_errors(command: F) -> F:
    """Turn library errors into a one-line message and the documented exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with _signals_raise():
                return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except BaseException as exc:  # noqa: BLE001 - this is the one place errors are mapped
            code = exit_code_for(exc)
            if isinstance(exc, TicketclfError):
                err.print(f"[red]error:[/red] {exc.message}", soft_wrap=True)
                if exc.hint:
                    err.print(f"  hint: {exc.hint}", soft_wrap=True)
            elif isinstance(exc, (Interrupted, KeyboardInterrupt)):
                err.print("interrupted: no output written; LLM answers so far are cached")
            else:
                err.print(f"[red]internal error:[/red] {type(exc).__name__}: {exc}",
                          soft_wrap=True)
                if not _State.debug:
                    err.print("  hint: rerun with --debug for the traceback and report it")
            if _State.debug:
                err.print(traceback.format_exc(), markup=False, highlight=False)
            raise typer.Exit(int(code)) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM and SIGINT raise Interrupted, so atomic writers discard their temp files."""

    def handler(signum: int, _frame: object) -> None:
        raise Interrupted(signum)

    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for s in previous:
            signal.signal(s, handler)
    except ValueError:  # not the main thread (e.g. an embedding host): leave signals alone
        previous = {}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _load(model: Path | None) -> tuple[TicketModel, Path]:
    path = resolve_model_dir(model_path(model))
    return load_model(path), path


def _default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@app.command()
@handles_errors
def classify(
    inputs: Annotated[list[str], typer.Argument(
        help="Input files (.csv, .jsonl, .ndjson, optionally .gz) or - for stdin.",
        show_default=False)],
    output: Annotated[str | None, typer.Option(
        "-o", "--output", help="Output .csv or .jsonl (.gz allowed), or - for stdout. "
        "Default: <first input>.classified.<ext>.")] = None,
    rejects: Annotated[str | None, typer.Option(
        "--rejects", help="Rejects file (JSONL). Default: <output>.rejects.jsonl.")] = None,
    input_format: Annotated[str | None, typer.Option(
        "--input-format", help="csv or jsonl, when the name does not tell (stdin).")] = None,
    output_format: Annotated[str | None, typer.Option(
        "--output-format", help="csv or jsonl, overriding the output name.")] = None,
    text_column: Annotated[str | None, typer.Option(
        "--text-column", help="Column with the ticket text. Default: auto-detected.")] = None,
    id_column: Annotated[str | None, typer.Option(
        "--id-column", help="Column with the ticket id. Default: auto-detected.")] = None,
    encoding: Annotated[str, typer.Option(
        "--encoding", help="Input text encoding (UTF-8 with or without BOM by default).")] = "utf-8-sig",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Rows per batch.")] = 1000,
    max_text_chars: Annotated[int, typer.Option(
        "--max-text-chars", min=1, help="Longer texts are rejected.")] = 20_000,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, help="Model worker processes. Default: the CPU count.")] = None,
    threshold: Annotated[float | None, typer.Option(
        "--llm-threshold", min=0.0, max=1.0,
        help="Confidence below which a ticket is uncertain (escalated, or flagged "
        "needs_review). Default: the model card's per-head thresholds.")] = None,
    shard: Annotated[str | None, typer.Option(
        "--shard", help="I/N: classify only shard I (0-based) of N, by a hash of the id.")] = None,
    max_reject_rate: Annotated[float, typer.Option(
        "--max-reject-rate", min=0.0, max=1.0,
        help="Exit 65 when more than this fraction of rows is rejected.")] = 0.05,
    model: ModelOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = "INFO",
) -> None:
    """Classify tickets from CSV/JSONL files into an output file, atomically."""
    setup_logging(log_format, log_level)
    ticket_model, model_dir = _load(model)
    job = ClassifyJob(
        inputs=inputs, output=output, rejects=rejects, input_format=input_format,
        output_format=output_format,
        read=ReadOptions(text_column=text_column, id_column=id_column, encoding=encoding,
                         batch_size=batch_size, max_text_chars=max_text_chars),
        threshold=threshold, workers=workers or _default_workers(),
        shard=Shard.parse(shard) if shard else None, max_reject_rate=max_reject_rate,
    )
    show_progress = not quiet and err.is_terminal
    report = RunReport()
    with _progress(show_progress) as on_progress:
        run_classify(job, ticket_model, model_dir, on_progress=on_progress, report=report)
    if not quiet:
        _print_summary(report)


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[int, int | None], None] | None]:
    if not enabled:
        yield None
        return
    with Progress(TextColumn("classifying"), BarColumn(), DownloadColumn(),
                  TimeRemainingColumn(), console=err, transient=True) as progress:
        task = progress.add_task("classify", total=None)

        def update(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def _print_summary(report: RunReport) -> None:
    table = Table(title="ticketclf run", show_header=False, title_justify="left")
    table.add_row("rows in", f"{report.rows_in:,}")
    table.add_row("classified", f"{report.classified:,}")
    table.add_row("rejected", f"{report.rejected:,} ({report.reject_rate:.1%})")
    table.add_row("needs review", f"{report.needs_review:,}")
    table.add_row("decided by", _mix(report.decided_by))
    table.add_row("categories", _mix(report.categories))
    table.add_row("sentiments", _mix(report.sentiments))
    table.add_row("priorities", _mix(report.priorities))
    table.add_row("speed", f"{report.rows_per_second:,.0f} rows/s in {report.seconds:.2f} s")
    table.add_row("output", report.output)
    table.add_row("rejects", report.rejects_path)
    err.print(table)


def _mix(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "-"


@app.command()
@handles_errors
def predict(
    text: Annotated[str, typer.Argument(help="The ticket text.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    top: Annotated[int, typer.Option("--top", min=1, help="Labels shown per head.")] = 3,
    model: ModelOpt = None,
) -> None:
    """Classify one text and show the top labels with their confidences."""
    ticket_model, _ = _load(model)
    proba = ticket_model.predict_proba([text])
    heads = {}
    for head in HEADS:
        if head not in proba:
            continue
        labels = ticket_model.labels(head)
        ranked = sorted(zip(labels, proba[head][0].tolist()), key=lambda lp: -lp[1])[:top]
        heads[head] = [{"label": lab, "confidence": round(p, 4)} for lab, p in ranked]
    best = {h: v[0]["label"] for h, v in heads.items()}
    priority = priority_for(best.get("category", ""), best.get("sentiment", ""), text)
    if as_json:
        typer.echo(json.dumps({"heads": heads, "priority": priority,
                               "model_version": ticket_model.version}))
        return
    out = Console(highlight=False)
    for head, ranked in heads.items():
        table = Table(title=head, title_justify="left")
        table.add_column("label")
        table.add_column("confidence", justify="right")
        for row in ranked:
            table.add_row(row["label"], f"{row['confidence']:.3f}")
        out.print(table)
    out.print(f"priority: {priority}")


@app.command()
@handles_errors
def doctor(model: ModelOpt = None) -> None:
    """Check that the model loads and matches its card. Exit 0 when healthy, 78 otherwise."""
    path = resolve_model_dir(model_path(model))
    ticket_model = load_model(path)
    typer.echo(f"model ok: {path} (version {ticket_model.version}, "
               f"heads: {', '.join(ticket_model.heads)})")


@app.command()
@handles_errors
def train(
    data: Annotated[list[Path], typer.Argument(help="Labelled CSV/JSONL files.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Model directory to write.")],
    text_column: Annotated[str, typer.Option("--text-column")] = "text",
    category_column: Annotated[str, typer.Option("--category-column")] = "category",
    sentiment_column: Annotated[str, typer.Option("--sentiment-column")] = "sentiment",
    any_labels: Annotated[bool, typer.Option(
        "--any-labels", help="Accept labels outside the built-in taxonomy.")] = False,
    folds: Annotated[int, typer.Option(
        "--folds", min=0, help="Cross-validation folds for metrics and thresholds (0: none).")] = 3,
    target_precision: Annotated[float, typer.Option(
        "--target-precision", min=0.0, max=1.0,
        help="Per-head threshold keeps at least this precision on held-out folds.")] = 0.9,
    as_json: Annotated[bool, typer.Option("--json", help="Print the model card as JSON.")] = False,
) -> None:
    """Train a model on labelled tickets; writes model.skops and card.json to the directory."""
    from .model.train import TrainSpec, train as train_model

    spec = TrainSpec(files=data, text_column=text_column,
                     label_columns={"category": category_column, "sentiment": sentiment_column},
                     any_labels=any_labels, folds=folds, target_precision=target_precision)
    with err.status("training", spinner="dots") if err.is_terminal else _nullcontext() as status:
        card = train_model(spec, output, progress=(lambda m: status.update(m)) if status else
                           (lambda m: None))
    if as_json:
        typer.echo(json.dumps(card, indent=2))
        return
    _print_training(card)


def _print_training(card: dict[str, Any]) -> None:
    table = Table(title=f"model {card['version']} ({card['train_seconds']} s)", title_justify="left")
    for col in ("head", "rows", "accuracy", "macro-F1", "ECE", "threshold"):
        table.add_column(col, justify="left" if col == "head" else "right")
    metrics = card["metrics"]
    for head, labels in card["labels"].items():
        m = metrics.get(head, {})
        fmt = (lambda k: f"{m[k]:.3f}" if k in m else "-")
        table.add_row(head, f"{card['training_data']['rows_per_head'][head]:,}", fmt("accuracy"),
                      fmt("macro_f1"), fmt("ece"), f"{card['thresholds'][head]:.3f}")
    err.print(table)
    err.print(f"cross-validated over {metrics['folds']} folds; model written with its card")


def run() -> None:
    """Console-script entry point."""
    app(prog_name="ticketclf")


if __name__ == "__main__":
    sys.exit(run())
