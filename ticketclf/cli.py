"""The command line: parse, build objects, call the library, render. No business logic."""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextlib import nullcontext as _nullcontext
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from . import __version__
from .cache import AnswerCache
from .config import default_cache_dir, gemini_base_url, gemini_key_source, model_path, secret
from .errors import ConfigError, DataError, Interrupted, TicketclfError, UsageError, exit_code_for
from .io.readers import ReadOptions
from .io.writers import AtomicFile
from .llm import (
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT_SECONDS,
    CachedEscalation,
    DryRunEscalator,
    EscalationSettings,
    EscalationStats,
    LLMConfig,
    Prices,
    hybrid_predictions,
    open_escalator,
)
from .llm.cost import DEFAULT_INPUT_PRICE, DEFAULT_OUTPUT_PRICE
from .logs import LogFormat, LogLevel, setup_logging
from .metrics import DEFAULT_JOB, Pushgateway, pushed_when_done
from .model import TicketModel, load_model
from .model.core import predictions_from_proba
from .model.explain import explain as explain_label
from .model.store import resolve_model_dir
from .pipeline import Thresholds
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
InputFormatOpt = Annotated[str | None, typer.Option(
    "--input-format", help="csv or jsonl, when the name does not tell (stdin).")]
TextColumnOpt = Annotated[str | None, typer.Option(
    "--text-column", help="Column with the ticket text. Default: auto-detected.")]
IdColumnOpt = Annotated[str | None, typer.Option(
    "--id-column", help="Column with the ticket id. Default: auto-detected.")]
EncodingOpt = Annotated[str, typer.Option(
    "--encoding", help="Input text encoding (UTF-8 with or without BOM by default).")]
LogFormatOpt = Annotated[LogFormat | None, typer.Option(
    "--log-format", envvar="TICKETCLF_LOG_FORMAT", show_envvar=True, case_sensitive=False,
    help="Default: console on a terminal, json otherwise.")]
LogLevelOpt = Annotated[LogLevel | None, typer.Option(
    "--log-level", envvar="TICKETCLF_LOG_LEVEL", show_envvar=True, case_sensitive=False,
    help="Default: INFO.")]
PushgatewayOpt = Annotated[str | None, typer.Option(
    "--pushgateway", envvar="TICKETCLF_PUSHGATEWAY_URL", show_envvar=True,
    help="Prometheus Pushgateway URL for run metrics (auth: TICKETCLF_PUSHGATEWAY_TOKEN, or "
    "TICKETCLF_PUSHGATEWAY_USERNAME and _PASSWORD, each also as _FILE). Default: no push.")]
# The LLM escalation options, shared by `classify` and `evaluate`; `llm_config` reads them.
LLMOpt = Annotated[bool | None, typer.Option(
    "--llm/--no-llm", show_default=False,
    help="Send uncertain tickets (redacted) to Gemini. Default: on exactly when a key is "
    "configured (GEMINI_API_KEY or GEMINI_API_KEY_FILE).")]
LLMModelOpt = Annotated[str, typer.Option(
    "--llm-model", envvar="TICKETCLF_LLM_MODEL", show_envvar=True, help="Gemini model.")]
MaxLLMCallsOpt = Annotated[int | None, typer.Option(
    "--max-llm-calls", min=0, help="At most this many Gemini requests per run, retries "
    "included; tickets beyond it keep the local prediction. Default: no limit.")]
LLMConcurrencyOpt = Annotated[int, typer.Option(
    "--llm-concurrency", min=1, max=64, help="Gemini requests in flight at once.")]
LLMRpmOpt = Annotated[float | None, typer.Option(
    "--llm-rpm", min=0.1, help="At most this many Gemini requests a minute. Default: no limit.")]
LLMTimeoutOpt = Annotated[float, typer.Option(
    "--llm-timeout", min=0.1, help="Seconds before a Gemini request times out (and is retried).")]
CacheDirOpt = Annotated[Path | None, typer.Option(
    "--cache-dir", envvar="TICKETCLF_CACHE_DIR", show_envvar=True,
    help="LLM answer cache directory. Default: $XDG_CACHE_HOME/ticketclf or ~/.cache/ticketclf.")]
NoCacheOpt = Annotated[bool, typer.Option(
    "--no-cache", help="Neither read nor write the LLM answer cache.")]
InputPriceOpt = Annotated[float, typer.Option(
    "--llm-input-price", min=0.0, help="USD per million input tokens, for the cost estimate "
    "(default: the default model's price).")]
OutputPriceOpt = Annotated[float, typer.Option(
    "--llm-output-price", min=0.0, help="USD per million output tokens, thinking included, for "
    "the cost estimate (default: the default model's price).")]
DryRunOpt = Annotated[bool, typer.Option(
    "--dry-run", help="Report how many tickets would go to Gemini, with estimated tokens and "
    "cost; call nothing, write nothing.")]


class _State:
    debug = False
    log_format: LogFormat | None = None
    log_level: LogLevel | None = None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ticketclf {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
) -> None:
    _State.debug = debug
    _State.log_format, _State.log_level = log_format, log_level
    setup_logging(log_format, log_level)


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


def llm_config(llm: bool | None, model: str, max_calls: int | None, concurrency: int,
               rpm: float | None, timeout: float, cache_dir: Path | None, no_cache: bool,
               input_price: float, output_price: float, dry_run: bool = False) -> LLMConfig | None:
    """The LLM step's settings from the command line, or None when it is off."""
    if llm is False:
        if dry_run:
            raise UsageError("--dry-run estimates the LLM step, which --no-llm turns off",
                             "drop one of the two")
        return None  # without reading the key: a broken key file must not stop --no-llm
    key = secret("GEMINI_API_KEY")
    if not (llm or key or dry_run):
        return None
    return LLMConfig(
        api_key=key, model=model, base_url=gemini_base_url(), timeout_seconds=timeout,
        cache_dir=None if no_cache else cache_dir or default_cache_dir(),
        settings=EscalationSettings(concurrency=concurrency, requests_per_minute=rpm,
                                    max_calls=max_calls, prices=Prices(input_price, output_price)))


@contextmanager
def _escalation(config: LLMConfig | None, report: RunReport,
                dry_run: bool) -> Iterator[CachedEscalation | None]:
    if config is None:
        yield None
        return
    with open_escalator(config, report, dry_run=dry_run) as escalator:
        yield escalator


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
    input_format: InputFormatOpt = None,
    output_format: Annotated[str | None, typer.Option(
        "--output-format", help="csv or jsonl, overriding the output name.")] = None,
    text_column: TextColumnOpt = None,
    id_column: IdColumnOpt = None,
    encoding: EncodingOpt = "utf-8-sig",
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
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="No progress bar or summary.")] = False,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
    pushgateway: PushgatewayOpt = None,
    job_name: Annotated[str, typer.Option(
        "--job-name", envvar="TICKETCLF_JOB_NAME", show_envvar=True,
        help="The `job` label of the pushed metrics.")] = DEFAULT_JOB,
    llm: LLMOpt = None,
    llm_model: LLMModelOpt = DEFAULT_MODEL,
    max_llm_calls: MaxLLMCallsOpt = None,
    llm_concurrency: LLMConcurrencyOpt = 4,
    llm_rpm: LLMRpmOpt = None,
    llm_timeout: LLMTimeoutOpt = DEFAULT_TIMEOUT_SECONDS,
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    llm_input_price: InputPriceOpt = DEFAULT_INPUT_PRICE,
    llm_output_price: OutputPriceOpt = DEFAULT_OUTPUT_PRICE,
    dry_run: DryRunOpt = False,
) -> None:
    """Classify tickets from CSV/JSONL files into an output file, atomically. Tickets the
    model is unsure of go, redacted, to Gemini when a key is configured (see --llm)."""
    report = RunReport()
    setup_logging(log_format or _State.log_format, log_level or _State.log_level,
                  run_id=report.run_id)
    shard_spec = Shard.parse(shard) if shard else None
    # A dry run is an estimate, not a run of the job: it must not move the job's metrics.
    gateway = Pushgateway(pushgateway, job_name, shard_spec) if pushgateway and not dry_run \
        else None
    with pushed_when_done(gateway, report):  # success, failure and SIGTERM alike
        ticket_model, model_dir = _load(model)
        job = ClassifyJob(
            inputs=inputs, output=output, rejects=rejects, input_format=input_format,
            output_format=output_format,
            read=ReadOptions(text_column=text_column, id_column=id_column, encoding=encoding,
                             batch_size=batch_size, max_text_chars=max_text_chars),
            threshold=threshold, workers=workers or _default_workers(),
            shard=shard_spec, max_reject_rate=max_reject_rate, dry_run=dry_run,
        )
        config = llm_config(llm, llm_model, max_llm_calls, llm_concurrency, llm_rpm,
                            llm_timeout, cache_dir, no_cache, llm_input_price, llm_output_price,
                            dry_run)
        show_progress = not quiet and err.is_terminal
        with _escalation(config, report, dry_run) as escalator, \
                _progress(show_progress) as on_progress:
            run_classify(job, ticket_model, model_dir, escalator=escalator,
                         on_progress=on_progress, report=report)
    if isinstance(escalator, DryRunEscalator):
        _print_dry_run(report, escalator)
    elif not quiet:
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
    if report.cache_lookups or report.llm_requests:
        table.add_row("LLM cache", _mix(report.cache_lookups))
        table.add_row("LLM requests", _mix(report.llm_requests))
        table.add_row("LLM tokens", f"{report.llm_tokens['input']:,} input, "
                      f"{report.llm_tokens['output']:,} output, ~${report.llm_cost_usd:.4f}")
    table.add_row("categories", _mix(report.categories))
    table.add_row("sentiments", _mix(report.sentiments))
    table.add_row("priorities", _mix(report.priorities))
    table.add_row("speed", f"{report.rows_per_second:,.0f} rows/s in {report.seconds:.2f} s")
    table.add_row("output", report.output)
    table.add_row("rejects", report.rejects_path)
    err.print(table)


def _print_dry_run(report: RunReport, escalator: DryRunEscalator) -> None:
    estimate = escalator.estimate
    over = f", {estimate.over_budget:,} over --max-llm-calls" if estimate.over_budget else ""
    typer.echo(f"dry run: {escalator.escalated:,} of {report.classified:,} tickets are uncertain;"
               f" {report.cache_lookups['hit']:,} answered from the cache, {estimate.tickets:,} "
               f"would be sent to {escalator.model}{over}")
    typer.echo(f"estimated tokens: {estimate.usage.input_tokens:,} input, "
               f"{estimate.usage.output_tokens:,} output; estimated cost: "
               f"${estimate.cost_usd:.4f}")
    typer.echo("nothing was sent and nothing was written")


def _mix(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "-"


@app.command()
@handles_errors
def predict(
    text: Annotated[str, typer.Argument(help="The ticket text.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    top: Annotated[int, typer.Option("--top", min=1, help="Labels shown per head.")] = 3,
    explain: Annotated[bool, typer.Option(
        "--explain", help="Show the words and letter patterns that drove each head.")] = False,
    model: ModelOpt = None,
) -> None:
    """Classify one text and show the top labels with their confidences (and why)."""
    ticket_model, _ = _load(model)
    proba = ticket_model.predict_proba([text])
    heads: dict[str, list[dict[str, Any]]] = {}
    for head in HEADS:
        if head not in proba:
            continue
        labels = ticket_model.labels(head)
        scored = sorted(zip(labels, proba[head][0].tolist(), strict=True),
                        key=lambda lp: -lp[1])[:top]
        heads[head] = [{"label": lab, "confidence": round(p, 4)} for lab, p in scored]
    best = {h: v[0]["label"] for h, v in heads.items()}
    priority = priority_for(best.get("category", ""), best.get("sentiment", ""), text)
    reasons = {h: explain_label(ticket_model, text, h, label) for h, label in best.items()} \
        if explain else {}
    if as_json:
        payload: dict[str, Any] = {"heads": heads, "priority": priority,
                                   "model_version": ticket_model.version}
        if explain:
            payload["explanation"] = {h: [{"feature": c.feature, "weight": round(c.weight, 4)}
                                          for c in cs] for h, cs in reasons.items()}
        typer.echo(json.dumps(payload))
        return
    out = Console(highlight=False)
    for head, ranked in heads.items():
        table = Table(title=head, title_justify="left")
        table.add_column("label")
        table.add_column("confidence", justify="right")
        for row in ranked:
            table.add_row(row["label"], f"{row['confidence']:.3f}")
        out.print(table)
        if head in reasons:
            why = ", ".join(f"{c.feature} (+{c.weight:.2f})" for c in reasons[head]) or "-"
            out.print(f"  {best[head]} because of: {why}", soft_wrap=True)
    out.print(f"priority: {priority}")


@app.command()
@handles_errors
def doctor(model: ModelOpt = None, pushgateway: PushgatewayOpt = None,
           llm_model: LLMModelOpt = DEFAULT_MODEL, cache_dir: CacheDirOpt = None) -> None:
    """Check that the model loads and matches its card, that the Pushgateway (when
    configured) answers, whether a Gemini key is configured (never printed) and that the LLM
    answer cache is usable. Exit 0 when healthy, 78 otherwise."""
    path = resolve_model_dir(model_path(model))
    ticket_model = load_model(path)
    typer.echo(f"model ok: {path} (version {ticket_model.version}, "
               f"heads: {', '.join(ticket_model.heads)})")
    pushgateway_problem = _check_pushgateway(pushgateway)
    if secret("GEMINI_API_KEY"):
        endpoint = gemini_base_url()
        typer.echo(f"gemini key: configured ({gemini_key_source()}); uncertain tickets go to "
                   f"{llm_model}" + (f" at {endpoint}" if endpoint else ""))
    else:
        typer.echo("gemini key: not configured (GEMINI_API_KEY or GEMINI_API_KEY_FILE); "
                   "LLM escalation is off")
    _echo_cache_stats(cache_dir or default_cache_dir(), by_prompt=False)
    if pushgateway_problem:  # after the other checks, so one doctor run reports them all
        raise ConfigError(pushgateway_problem,
                          "check --pushgateway / TICKETCLF_PUSHGATEWAY_URL and its credentials")


def _check_pushgateway(url: str | None) -> str | None:
    """Print doctor's Pushgateway line; return what is wrong, if anything."""
    if not url:
        typer.echo("pushgateway: not configured (run metrics are not pushed)")
        return None
    gateway = Pushgateway(url)
    problem = gateway.problem()
    if problem is None:
        typer.echo(f"pushgateway ok: {gateway.safe_url}")
        return None
    return f"pushgateway {gateway.safe_url} unreachable: {problem}"


cache_app = typer.Typer(help="Inspect or empty the LLM answer cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("stats")
@handles_errors
def cache_stats(cache_dir: CacheDirOpt = None) -> None:
    """Answers cached, size on disk and limit, and answers per prompt version and model."""
    _echo_cache_stats(cache_dir or default_cache_dir(), by_prompt=True)


@cache_app.command("clear")
@handles_errors
def cache_clear(cache_dir: CacheDirOpt = None) -> None:
    """Delete every cached LLM answer (the next runs pay for them again)."""
    directory = cache_dir or default_cache_dir()
    with AnswerCache(directory) as cache:
        removed = cache.clear()
    typer.echo(f"cache cleared: {directory} ({removed:,} answers removed)")


def _echo_cache_stats(directory: Path, by_prompt: bool) -> None:
    with AnswerCache(directory) as cache:
        stats = cache.stats()  # ConfigError when the cache cannot be used
    typer.echo(f"cache ok: {directory} ({stats.entries:,} answers, "
               f"{stats.bytes / 2**20:.1f} MiB of {stats.size_limit / 2**20:,.0f} MiB)")
    if by_prompt:
        for prompt_and_model, count in sorted(stats.by_prompt_and_model.items()):
            typer.echo(f"  {prompt_and_model}: {count:,}")


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
    encoder: Annotated[bool, typer.Option(
        "--encoder", help="Add the pretrained all-MiniLM-L6-v2 sentence encoder: more accurate, "
        "much slower to train and classify (needs the optional install: README).")] = False,
    min_examples: Annotated[int | None, typer.Option(
        "--min-examples", min=1, show_default=False, help="Drop labels with fewer examples, "
        "with a warning naming them. Default: what the folds need (8 with --folds 3).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the model card as JSON.")] = False,
) -> None:
    """Train a model on labelled tickets; writes model.skops and card.json to the directory."""
    from .model.train import TrainSpec
    from .model.train import train as train_model

    spec = TrainSpec(files=data, text_column=text_column,
                     label_columns={"category": category_column, "sentiment": sentiment_column},
                     any_labels=any_labels, folds=folds, target_precision=target_precision,
                     encoder=encoder, min_examples=min_examples)
    with (err.status("training") if err.is_terminal else _nullcontext()) as status:
        card = train_model(spec, output, progress=status.update if status else lambda _m: None)
    if as_json:
        typer.echo(json.dumps(card, indent=2))
        return
    _print_training(card)


def _print_training(card: dict[str, Any]) -> None:
    table = Table(title=f"model {card['version']} ({card['train_seconds']} s)",
                  title_justify="left")
    for col in ("head", "rows", "accuracy", "macro-F1", "ECE", "threshold"):
        table.add_column(col, justify="left" if col == "head" else "right")
    metrics = card["metrics"]
    for head in card["labels"]:
        m = metrics.get(head, {})
        scores = [f"{m[k]:.3f}" if k in m else "-" for k in ("accuracy", "macro_f1", "ece")]
        table.add_row(head, f"{card['training_data']['rows_per_head'][head]:,}", *scores,
                      f"{card['thresholds'][head]:.3f}")
    err.print(table)
    err.print(f"cross-validated over {metrics['folds']} folds; model written with its card")


@app.command()
@handles_errors
def evaluate(
    data: Annotated[Path, typer.Argument(help="Labelled CSV/JSONL file.")],
    model: ModelOpt = None,
    text_column: Annotated[str, typer.Option("--text-column")] = "text",
    category_column: Annotated[str, typer.Option("--category-column")] = "category",
    sentiment_column: Annotated[str, typer.Option("--sentiment-column")] = "sentiment",
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
    report: Annotated[Path | None, typer.Option(
        "--report", help="Also write a self-contained HTML report with plots.")] = None,
    llm: Annotated[bool, typer.Option(
        "--llm", help="Also score the hybrid: uncertain tickets escalated as in classify "
        "(needs a Gemini key; answers are cached).")] = False,
    threshold: Annotated[float | None, typer.Option(
        "--llm-threshold", min=0.0, max=1.0,
        help="With --llm: escalation threshold. Default: the model card's.")] = None,
    llm_model: LLMModelOpt = DEFAULT_MODEL,
    max_llm_calls: MaxLLMCallsOpt = None,
    llm_concurrency: LLMConcurrencyOpt = 4,
    llm_rpm: LLMRpmOpt = None,
    llm_timeout: LLMTimeoutOpt = DEFAULT_TIMEOUT_SECONDS,
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """Score a model against labelled tickets: accuracy, macro-F1, per-class scores, confusion
    matrix, calibration (ECE) and risk–coverage; with --llm, the hybrid beside it."""
    from .evaluate import evaluate_labels, evaluate_predictions
    from .model.train import read_table
    from .report import render_report

    ticket_model, _ = _load(model)
    columns = {"category": category_column, "sentiment": sentiment_column}
    table = read_table(data, [text_column, *columns.values()])
    if text_column not in table.columns:
        raise DataError(f"{data}: no text column {text_column!r}; columns found: "
                        f"{', '.join(table.columns)}", "pass it with --text-column")
    truth = {h: table[c].tolist() for h, c in columns.items() if c in table.columns}
    if not truth:
        raise DataError(f"{data}: no label columns ({', '.join(columns.values())})",
                        "name them with --category-column / --sentiment-column")
    proba = ticket_model.predict_proba(table[text_column].tolist())
    result = {"model_version": ticket_model.version, "data": str(data), "rows": len(table),
              "heads": evaluate_predictions(proba, ticket_model.label_table(), truth)}
    if llm:
        config = llm_config(True, llm_model, max_llm_calls, llm_concurrency, llm_rpm,
                            llm_timeout, cache_dir, no_cache, DEFAULT_INPUT_PRICE,
                            DEFAULT_OUTPUT_PRICE)
        assert config is not None  # --llm forces it on (or raises without a key)
        stats = EscalationStats()
        local = predictions_from_proba(proba, ticket_model.label_table())
        with open_escalator(config, stats) as escalator:
            hybrid = hybrid_predictions(escalator, table[text_column].tolist(), local,
                                        Thresholds.from_model(ticket_model, threshold))
        decided = {h: ([getattr(p, h) for p in hybrid.predictions],
                       np.array([getattr(p, f"{h}_confidence") for p in hybrid.predictions]))
                   for h in proba}
        result["hybrid"] = {
            "escalation_rate": hybrid.escalation_rate,
            "decided_by_llm": hybrid.decided_by.count("llm"),
            "llm_requests": dict(stats.llm_requests), "cache_lookups": dict(stats.cache_lookups),
            "heads": evaluate_labels(decided, ticket_model.label_table(), truth)}
    if report is not None:
        with AtomicFile(report) as f:
            f.write(render_report(result).encode())
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        _print_evaluation(result)


def _print_evaluation(result: dict[str, Any]) -> None:
    out = Console(highlight=False)
    out.print(f"model {result['model_version']} on {result['data']} ({result['rows']:,} rows)")
    if "hybrid" in result:
        hybrid = result["hybrid"]
        table = Table("head", "local accuracy", "hybrid accuracy", "local macro-F1",
                      "hybrid macro-F1", title=f"with the LLM: {hybrid['escalation_rate']:.1%} "
                      f"escalated, {hybrid['decided_by_llm']:,} decided by the LLM",
                      title_justify="left")
        for head, m in hybrid["heads"].items():
            local = result["heads"][head]
            table.add_row(head, f"{local['accuracy']:.3f}", f"{m['accuracy']:.3f}",
                          f"{local['macro_f1']:.3f}", f"{m['macro_f1']:.3f}")
        out.print(table)
    for head, m in result["heads"].items():
        out.print(f"\n[bold]{head}[/bold]: accuracy {m['accuracy']:.3f}  macro-F1 "
                  f"{m['macro_f1']:.3f}  ECE {m['ece']:.3f}  (n={m['n']:,})")
        per_class = Table("label", "precision", "recall", "F1", "support")
        for lab, sc in m["per_class"].items():
            per_class.add_row(lab, f"{sc['precision']:.3f}", f"{sc['recall']:.3f}",
                              f"{sc['f1']:.3f}", str(sc["support"]))
        out.print(per_class)
        confusion = Table("true \\ predicted", *[lab[:6] for lab in m["labels"]])
        for lab, row in zip(m["labels"], m["confusion"], strict=True):
            confusion.add_row(lab, *[str(v) for v in row])
        out.print(confusion)
        coverage = Table("coverage", "accuracy", "threshold")
        for r in m["risk_coverage"]:
            coverage.add_row(f"{r['coverage']:.0%}", f"{r['accuracy']:.3f}",
                             f"{r['threshold']:.3f}")
        out.print(coverage)


@app.command()
@handles_errors
def compare(
    old_model: Annotated[Path, typer.Argument(
        help="The model in use (directory or its card.json).", show_default=False)],
    new_model: Annotated[Path, typer.Argument(help="The candidate model.", show_default=False)],
    data: Annotated[list[str], typer.Argument(
        help="Tickets (.csv, .jsonl, optionally .gz, or - for stdin), the same for both models.",
        show_default=False)],
    input_format: InputFormatOpt = None,
    text_column: TextColumnOpt = None,
    id_column: IdColumnOpt = None,
    category_column: Annotated[str, typer.Option(
        "--category-column", help="True category labels, when the data has them.")] = "category",
    sentiment_column: Annotated[str, typer.Option(
        "--sentiment-column", help="True sentiment labels, when the data has them.")] = "sentiment",
    encoding: EncodingOpt = "utf-8-sig",
    show: Annotated[int, typer.Option(
        "--show", min=0, help="Changed tickets listed (all of them are in --json).")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
) -> None:
    """Run two models over the same tickets before promoting the new one: agreement, label-mix
    shift per class, the tickets that changed label and, where the data has labels, both
    models' metrics side by side."""
    from .compare import compare_models

    old, _ = _load(old_model)
    new, _ = _load(new_model)
    result = compare_models(
        old, new, data, ReadOptions(text_column=text_column, id_column=id_column,
                                    encoding=encoding),
        {"category": category_column, "sentiment": sentiment_column}, input_format)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
    else:
        _print_comparison(result.as_dict(), show)


def _print_comparison(result: dict[str, Any], show: int) -> None:
    out = Console(highlight=False)
    out.print(f"old {result['old_model']} vs new {result['new_model']} on {result['rows']:,} "
              f"tickets ({result['rejected']:,} rejected): agreement {result['agreement']:.1%}, "
              f"{result['changed']:,} changed")
    for head, h in result["heads"].items():
        out.print(f"\n[bold]{head}[/bold]: agreement {h['agreement']:.1%}, uncertain "
                  f"{h['old_uncertain_rate']:.1%} -> {h['new_uncertain_rate']:.1%}")
        mix = Table("label", "old", "new", "shift")
        for label, m in h["mix"].items():
            mix.add_row(label, f"{m['old']:,} ({m['old_share']:.1%})",
                        f"{m['new']:,} ({m['new_share']:.1%})", f"{m['shift'] * 100:+.1f} pp")
        out.print(mix)
        if "metrics" in h:
            old_m, new_m = h["metrics"]["old"], h["metrics"]["new"]
            metrics = Table(f"labelled (n={old_m['n']:,})", "old", "new", "change")
            for key, name in (("accuracy", "accuracy"), ("macro_f1", "macro-F1"), ("ece", "ECE")):
                metrics.add_row(name, f"{old_m[key]:.3f}", f"{new_m[key]:.3f}",
                                f"{new_m[key] - old_m[key]:+.3f}")
            out.print(metrics)
    if show and result["changed_tickets"]:
        changed = Table("id", "changed", "text", title=f"changed tickets (first {show})",
                        title_justify="left")
        for t in result["changed_tickets"][:show]:
            what = ", ".join(f"{c['head']} {c['old']} -> {c['new']}" for c in t["changes"])
            changed.add_row(t["id"], what, t["excerpt"].replace("\n", " "))
        out.print(changed)


def run() -> None:
    """Console-script entry point."""
    app(prog_name="ticketclf")


if __name__ == "__main__":
    run()
