"""The command line: parse, build objects, call the library, render. No business logic.

Start-up matters (`--help`, one-ticket `predict`): this module imports only typer, click and
the light parts of ticketclf at load time; each command imports what it uses.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from typer.core import TyperGroup
from typer.core import _click as click  # the click that Typer runs on (vendored by Typer)

from . import __version__, interrupts
from .config import DEFAULT_JOB, default_cache_dir, model_path
from .errors import ConfigError, Interrupted, TicketclfError, UsageError, exit_code_for
from .interrupts import signals_raise
from .logs import LogFormat, LogLevel, setup_logging

if TYPE_CHECKING:
    from rich.console import Console

    from .io.readers import ReadOptions
    from .llm import CachedEscalation, DryRunEscalator, EscalationSettings, LLMChoice
    from .model import TicketModel
    from .runner import RunReport

log = logging.getLogger("ticketclf.cli")


@dataclass
class GlobalOptions:
    """The options given before the command, kept on the click context."""

    debug: bool = False
    log_format: LogFormat | None = None
    log_level: LogLevel | None = None


class ErrorBoundary(TyperGroup):
    """The one place errors become exit codes: every command runs inside `invoke`, so no
    command can forget it. Library errors print one line (and a hint); anything else is a bug
    (exit 1) with the traceback under --debug; SIGTERM/SIGINT become Interrupted, so atomic
    writers discard their temporaries."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with signals_raise():
                result = super().invoke(ctx)
                interrupts.check()  # a signal whose exception was lost still ends as one
                return result
        except click.exceptions.NoSuchOption as exc:
            if exc.ctx is None or exc.ctx.command.name != "predict":
                raise
            raise click.exceptions.NoSuchOption(
                exc.option_name, f"{exc.message} (a ticket text that starts with '-' goes "
                "after --: ticketclf predict -- '-text')", ctx=exc.ctx) from None
        except (typer.Exit, typer.Abort, click.ClickException):
            raise
        except BaseException as exc:  # noqa: BLE001 - this is the one place errors are mapped
            debug = isinstance(ctx.obj, GlobalOptions) and ctx.obj.debug
            _report_error(exc, debug)
            raise typer.Exit(int(exit_code_for(exc))) from None


def _report_error(exc: BaseException, debug: bool) -> None:
    from rich.markup import escape  # messages name things like [category]: text, not markup

    err = _console(stderr=True)
    if isinstance(exc, TicketclfError):
        err.print(f"[red]error:[/red] {escape(exc.message)}", soft_wrap=True)
        if exc.hint:
            err.print(f"  hint: {escape(exc.hint)}", soft_wrap=True)
    elif isinstance(exc, (Interrupted, KeyboardInterrupt)):
        err.print("interrupted: no output written; LLM answers so far are cached")
    else:
        err.print(f"[red]internal error:[/red] {type(exc).__name__}: {exc}", soft_wrap=True)
        if not debug:
            err.print("  hint: rerun with --debug for the traceback and report it")
    if debug:
        err.print(traceback.format_exc(), markup=False, highlight=False)


app = typer.Typer(
    cls=ErrorBoundary,
    help="Classify telecom support tickets: category, sentiment and priority.",
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: rich's panels cut defaults and variable names with "…" at 80 columns.
    rich_markup_mode=None,
    context_settings={"max_content_width": 100},
)


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            # rich exits 1 here, the code kept for bugs: a reader that stopped early is an
            # output error (73), as for `classify -o -`.
            from .io.writers import stdout_closed

            raise stdout_closed("all of the output was written",
                                "let the reader take all of it, or save it with > FILE")

    return _Console(stderr=stderr, highlight=False)


def _echo_err(message: str) -> None:
    typer.echo(message, err=True)


ModelOpt = Annotated[Path | None, typer.Option(
    "--model", envvar="TICKETCLF_MODEL", show_envvar=True, metavar="PATH",
    help="Model directory (or its card.json). Default: the shipped model.")]
InputsArg = Annotated[list[str], typer.Argument(
    help="Input files (.csv, .jsonl, .ndjson, optionally .gz) or - for stdin.",
    show_default=False, metavar="INPUT...")]
InputFormatOpt = Annotated[str | None, typer.Option(
    "--input-format", metavar="csv|jsonl", help="Input format, when the name does not tell "
    "(stdin).")]
TextColumnOpt = Annotated[str | None, typer.Option(
    "--text-column", metavar="NAME", help="Column with the ticket text. Default: auto-detected.")]
IdColumnOpt = Annotated[str | None, typer.Option(
    "--id-column", metavar="NAME", help="Column with the ticket id. Default: auto-detected.")]
EncodingOpt = Annotated[str, typer.Option(
    "--encoding", metavar="NAME",
    help="Input text encoding (UTF-8 with or without BOM by default).")]
DelimiterOpt = Annotated[str | None, typer.Option(
    "--delimiter", metavar="CHAR", help="CSV delimiter, e.g. ';' or '\\t'. Default: Excel's "
    "sep= line, else sniffed among , ; tab |.")]
CategoryColumnOpt = Annotated[str, typer.Option(
    "--category-column", metavar="NAME", help="Column with the true category labels.")]
SentimentColumnOpt = Annotated[str, typer.Option(
    "--sentiment-column", metavar="NAME", help="Column with the true sentiment labels.")]
LogFormatOpt = Annotated[LogFormat | None, typer.Option(
    "--log-format", envvar="TICKETCLF_LOG_FORMAT", show_envvar=True, case_sensitive=False,
    help="Default: console on a terminal, json otherwise.")]
LogLevelOpt = Annotated[LogLevel | None, typer.Option(
    "--log-level", envvar="TICKETCLF_LOG_LEVEL", show_envvar=True, case_sensitive=False,
    help="Default: INFO.")]
PushgatewayOpt = Annotated[str | None, typer.Option(
    "--pushgateway", envvar="TICKETCLF_PUSHGATEWAY_URL", show_envvar=True, metavar="URL",
    help="Prometheus Pushgateway URL for run metrics (auth: TICKETCLF_PUSHGATEWAY_TOKEN, or "
    "TICKETCLF_PUSHGATEWAY_USERNAME and _PASSWORD, each also as _FILE). Default: no push.")]
# The LLM escalation options, shared by `classify` and `evaluate`; `_llm_choice` reads them.
LLMOpt = Annotated[bool | None, typer.Option(
    "--llm/--no-llm", show_default=False,
    help="Send uncertain tickets (redacted) to the LLM backend. Default: on exactly when the "
    "backend's key is configured (e.g. GEMINI_API_KEY or GEMINI_API_KEY_FILE).")]
LLMBackendOpt = Annotated[str, typer.Option(
    "--llm-backend", envvar="TICKETCLF_LLM_BACKEND", show_envvar=True, metavar="NAME",
    help="Which LLM service answers uncertain tickets.")]
LLMModelOpt = Annotated[str | None, typer.Option(
    "--llm-model", envvar="TICKETCLF_LLM_MODEL", show_envvar=True, metavar="NAME",
    help="The backend's model. Default: the backend's default model.")]
LLMBaseUrlOpt = Annotated[str | None, typer.Option(
    "--llm-base-url", metavar="URL", help="The backend's endpoint: a local server, a gateway or "
    "a proxy. Default: TICKETCLF_LLM_BASE_URL for openai, TICKETCLF_GEMINI_BASE_URL for gemini, "
    "else the service's own.")]
MaxLLMCallsOpt = Annotated[int | None, typer.Option(
    "--max-llm-calls", metavar="N", min=0, help="At most this many LLM requests per run, retries "
    "included; tickets beyond it keep the local prediction. Default: no limit.")]
LLMConcurrencyOpt = Annotated[int, typer.Option(
    "--llm-concurrency", metavar="N", min=1, max=64, help="LLM requests in flight at once.")]
LLMRpmOpt = Annotated[float | None, typer.Option(
    "--llm-rpm", metavar="X", min=0.1,
    help="At most this many LLM requests a minute. Default: no limit.")]
LLMTimeoutOpt = Annotated[float, typer.Option(
    "--llm-timeout", metavar="X", min=0.1, max=600.0,
    help="Seconds before an LLM request times out (and is retried).")]
CacheDirOpt = Annotated[Path | None, typer.Option(
    "--cache-dir", envvar="TICKETCLF_CACHE_DIR", show_envvar=True, metavar="DIR",
    help="LLM answer cache directory. Default: $XDG_CACHE_HOME/ticketclf or ~/.cache/ticketclf.")]
NoCacheOpt = Annotated[bool, typer.Option(
    "--no-cache", help="Neither read nor write the LLM answer cache.")]
InputPriceOpt = Annotated[float | None, typer.Option(
    "--llm-input-price", metavar="X", min=0.0,
    help="USD per million input tokens, for the cost estimate. "
    "Default: the backend's price for the model.")]
OutputPriceOpt = Annotated[float | None, typer.Option(
    "--llm-output-price", metavar="X", min=0.0,
    help="USD per million output tokens, thinking included, for "
    "the cost estimate. Default: the backend's price for the model.")]
LLMModeOpt = Annotated[Literal["online", "batch"], typer.Option(
    "--llm-mode", envvar="TICKETCLF_LLM_MODE", show_envvar=True, case_sensitive=False,
    help="online: one request per uncertain ticket, as the run goes. batch: all of them as one "
    "Batch API job at half the price, waited for up to --llm-wait (gemini only; not stdin).")]
LLMWaitOpt = Annotated[float, typer.Option(
    "--llm-wait", min=0.0, max=86_400.0, metavar="SECONDS",
    help="Batch mode: how long to wait for the job; answers arriving later are collected by "
    "the next run.")]
DryRunOpt = Annotated[bool, typer.Option(
    "--dry-run", help="Report how many tickets would go to the LLM, with estimated tokens and "
    "cost; call nothing, write nothing.")]

DEFAULT_LLM_BACKEND = "gemini"  # registry.DEFAULT_BACKEND, without importing the LLM package
DEFAULT_LLM_TIMEOUT = 30.0


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ticketclf {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def main(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
) -> None:
    ctx.obj = GlobalOptions(debug, log_format, log_level)
    if ctx.invoked_subcommand is None:  # no command: the help, and a usage error
        typer.echo(ctx.get_help(), err=True)
        raise typer.Exit(2)
    setup_logging(log_format, log_level)


def _global(ctx: typer.Context) -> GlobalOptions:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, GlobalOptions) else GlobalOptions()


def _load(model: Path | None) -> tuple[TicketModel, Path]:
    from .model import load_model
    from .model.store import resolve_model_dir

    path = resolve_model_dir(model_path(model))
    return load_model(path), path


def _read_options(**options: Any) -> ReadOptions:
    from .io.readers import ReadOptions

    return ReadOptions(**options)


def _llm_choice(enabled: bool | None, backend: str, model: str | None, timeout: float,
                cache_dir: Path | None, no_cache: bool, settings: EscalationSettings,
                dry_run: bool = False, base_url: str | None = None) -> LLMChoice:
    from .llm import LLMChoice

    return LLMChoice(enabled=enabled, backend=backend, model=model, timeout_seconds=timeout,
                     cache_dir=cache_dir, use_cache=not no_cache, settings=settings,
                     dry_run=dry_run, base_url=base_url)


def _llm_settings(max_calls: int | None, concurrency: int, rpm: float | None,
                  input_price: float | None = None,
                  output_price: float | None = None) -> EscalationSettings:
    from .llm import EscalationSettings, Prices

    prices = None if input_price is None and output_price is None else Prices(
        input_price or 0.0, output_price or 0.0)
    return EscalationSettings(concurrency=concurrency, requests_per_minute=rpm,
                              max_calls=max_calls, prices=prices)


@app.command()
def classify(
    ctx: typer.Context,
    inputs: InputsArg,
    output: Annotated[str | None, typer.Option(
        "-o", "--output", metavar="PATH", help="Output .csv or .jsonl (.gz allowed), or - for "
        "stdout. Default: <first input>.classified.<ext>.")] = None,
    rejects: Annotated[str | None, typer.Option(
        "--rejects", metavar="PATH",
        help="Rejects file (JSONL). Default: <output>.rejects.jsonl.")] = None,
    input_format: InputFormatOpt = None,
    output_format: Annotated[str | None, typer.Option(
        "--output-format", metavar="csv|jsonl", help="Output format, overriding the output "
        "name.")] = None,
    text_column: TextColumnOpt = None,
    id_column: IdColumnOpt = None,
    encoding: EncodingOpt = "utf-8-sig",
    delimiter: DelimiterOpt = None,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", metavar="N", min=1, max=100_000, help="Rows per batch.")] = 1000,
    max_text_chars: Annotated[int, typer.Option(
        "--max-text-chars", metavar="N", min=1, max=1_000_000,
        help="Longer texts are rejected.")] = 20_000,
    workers: Annotated[int | None, typer.Option(
        "--workers", metavar="N", min=1,
        help="Model worker processes. Default: the CPU count.")] = None,
    threshold: Annotated[float | None, typer.Option(
        "--llm-threshold", metavar="X", min=0.0, max=1.0,
        help="Confidence below which a ticket is uncertain (escalated, or flagged "
        "needs_review). Default: the model card's per-head thresholds.")] = None,
    shard: Annotated[str | None, typer.Option(
        "--shard", metavar="I/N",
        help="Classify only shard I (0-based) of N, by a hash of the id.")] = None,
    max_reject_rate: Annotated[float, typer.Option(
        "--max-reject-rate", metavar="X", min=0.0, max=1.0,
        help="Exit 65 when more than this fraction of rows is rejected.")] = 0.05,
    model: ModelOpt = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="No progress bar or summary.")] = False,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
    pushgateway: PushgatewayOpt = None,
    job_name: Annotated[str, typer.Option(
        "--job-name", envvar="TICKETCLF_JOB_NAME", show_envvar=True, metavar="NAME",
        help="The `job` label of the pushed metrics.")] = DEFAULT_JOB,
    llm: LLMOpt = None,
    llm_backend: LLMBackendOpt = DEFAULT_LLM_BACKEND,
    llm_model: LLMModelOpt = None,
    llm_base_url: LLMBaseUrlOpt = None,
    max_llm_calls: MaxLLMCallsOpt = None,
    llm_concurrency: LLMConcurrencyOpt = 4,
    llm_rpm: LLMRpmOpt = None,
    llm_timeout: LLMTimeoutOpt = DEFAULT_LLM_TIMEOUT,
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    llm_input_price: InputPriceOpt = None,
    llm_output_price: OutputPriceOpt = None,
    llm_mode: LLMModeOpt = "online",
    llm_wait: LLMWaitOpt = 10_800.0,
    dry_run: DryRunOpt = False,
) -> None:
    """Classify tickets from CSV/JSONL files into an output file, atomically. Tickets the
    model is unsure of go, redacted, to the LLM when its key is configured (see --llm)."""
    from .llm import DryRunEscalator, LLMEscalator, llm_config
    from .metrics import Pushgateway, pushed_when_done
    from .runner import ClassifyJob, RunReport, Shard, run_classify

    options = _global(ctx)
    report = RunReport()
    setup_logging(log_format or options.log_format, log_level or options.log_level,
                  run_id=report.run_id)
    shard_spec = Shard.parse(shard) if shard else None
    # A dry run is an estimate, not a run of the job: it must not move the job's metrics.
    gateway = Pushgateway(pushgateway, job_name, shard_spec) if pushgateway and not dry_run \
        else None
    escalator: CachedEscalation | None = None
    with pushed_when_done(gateway, report):  # success, failure and SIGTERM alike
        ticket_model, model_dir = _load(model)
        job = ClassifyJob(
            inputs=inputs, output=output, rejects=rejects, input_format=input_format,
            output_format=output_format,
            read=_read_options(text_column=text_column, id_column=id_column, encoding=encoding,
                               batch_size=batch_size, max_text_chars=max_text_chars,
                               delimiter=delimiter),
            threshold=threshold, workers=workers or _default_workers(),
            shard=shard_spec, max_reject_rate=max_reject_rate, dry_run=dry_run,
        )
        config = llm_config(_llm_choice(
            llm, llm_backend, llm_model, llm_timeout, cache_dir, no_cache,
            _llm_settings(max_llm_calls, llm_concurrency, llm_rpm, llm_input_price,
                          llm_output_price), dry_run, llm_base_url))
        show_progress = not quiet and _console(stderr=True).is_terminal
        with _escalation(config, report.llm, dry_run, ticket_model) as escalator, \
                _progress(show_progress) as on_progress:
            if llm_mode == "batch" and isinstance(escalator, LLMEscalator):
                from .llm.batch import run_batch

                run_batch(job, ticket_model, model_dir, escalator, llm_wait, on_progress, report)
            else:
                run_classify(job, ticket_model, model_dir, escalator=escalator,
                             on_progress=on_progress, report=report)
    if isinstance(escalator, DryRunEscalator):
        _print_dry_run(report, escalator)
    elif not quiet:
        _print_summary(report)


def _default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextmanager
def _escalation(config: Any, counters: Any, dry_run: bool,
                model: TicketModel) -> Iterator[CachedEscalation | None]:
    if config is None:
        yield None
        return
    from .llm import open_escalator

    with open_escalator(config, counters, dry_run=dry_run,
                        taxonomy=model.taxonomy) as escalator:
        yield escalator


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[int, int | None], None] | None]:
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("classifying"), BarColumn(), DownloadColumn(),
                  TimeRemainingColumn(), console=_console(stderr=True),
                  transient=True) as progress:
        task = progress.add_task("classify", total=None)

        def update(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def _print_summary(report: RunReport) -> None:
    from rich.table import Table

    table = Table(title="ticketclf run", show_header=False, title_justify="left")
    table.add_row("rows in", f"{report.rows_in:,}")
    table.add_row("classified", f"{report.classified:,}")
    table.add_row("rejected", f"{report.rejected:,} ({report.reject_rate:.1%})")
    table.add_row("needs review", f"{report.needs_review:,}")
    table.add_row("decided by", _mix(report.decided_by))
    llm = report.llm
    if llm.cache_lookups or llm.llm_requests:
        table.add_row("LLM cache", _mix(llm.cache_lookups))
        table.add_row("LLM requests", _mix(llm.llm_requests))
        table.add_row("LLM tokens", f"{llm.llm_tokens['input']:,} input, "
                      f"{llm.llm_tokens['output']:,} output, ~${llm.llm_cost_usd:.4f}")
    table.add_row("categories", _mix(report.categories))
    table.add_row("sentiments", _mix(report.sentiments))
    table.add_row("priorities", _mix(report.priorities))
    table.add_row("speed", f"{report.rows_per_second:,.0f} rows/s in {report.seconds:.2f} s")
    table.add_row("output", report.output)
    table.add_row("rejects", report.rejects_path)
    _console(stderr=True).print(table)


def _print_dry_run(report: RunReport, escalator: DryRunEscalator) -> None:
    estimate = escalator.estimate
    over = f", {estimate.over_budget:,} over --max-llm-calls" if estimate.over_budget else ""
    typer.echo(f"dry run: {escalator.escalated:,} of {report.classified:,} tickets are uncertain;"
               f" {report.llm.cache_lookups['hit']:,} answered from the cache, "
               f"{estimate.tickets:,} would be sent to {escalator.backend_name} "
               f"{escalator.model}{over}")
    typer.echo(f"estimated tokens: {estimate.usage.input_tokens:,} input, "
               f"{estimate.usage.output_tokens:,} output; estimated cost: "
               f"${estimate.cost_usd:.4f}")
    typer.echo("nothing was sent and nothing was written")


def _mix(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "-"


@app.command()
def predict(
    text: Annotated[str, typer.Argument(
        help="The ticket text (after --, when it starts with '-').", metavar="TEXT")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    top: Annotated[int, typer.Option("--top", metavar="N", min=1, max=100,
                                     help="Labels shown per head.")] = 3,
    explain: Annotated[bool, typer.Option(
        "--explain", help="Show the words and letter patterns that drove each head.")] = False,
    threshold: Annotated[float | None, typer.Option(
        "--llm-threshold", metavar="X", min=0.0, max=1.0,
        help="Confidence below which the ticket is "
        "uncertain. Default: the model card's per-head thresholds.")] = None,
    model: ModelOpt = None,
) -> None:
    """Classify one text: the top labels with their confidences, the priority, whether a run
    would escalate it (or flag it for review), and with --explain why."""
    from .model.explain import answer

    ticket_model, _ = _load(model)
    result = answer(ticket_model, text, top=top, with_reasons=explain, threshold=threshold)
    if as_json:
        payload: dict[str, Any] = {
            "heads": {h: [{"label": lab, "confidence": round(p, 4)} for lab, p in ranked]
                      for h, ranked in result.ranked.items()},
            "priority": result.priority, "language": result.language,
            "uncertain": result.uncertain, "uncertain_heads": sorted(result.uncertain_heads),
            "unseen_language": result.unseen_language,
            "model_version": result.model_version}
        if explain:
            payload["explanation"] = {h: [{"feature": c.feature, "weight": round(c.weight, 4)}
                                          for c in cs] for h, cs in result.reasons.items()}
        typer.echo(json.dumps(payload))
        return
    from rich.table import Table

    out = _console()
    for head, ranked in result.ranked.items():
        table = Table(title=head, title_justify="left")
        table.add_column("label")
        table.add_column("confidence", justify="right")
        for label, confidence in ranked:
            table.add_row(label, f"{confidence:.3f}")
        out.print(table)
        if head in result.reasons:
            why = ", ".join(f"{c.feature} (+{c.weight:.2f})" for c in result.reasons[head]) or "-"
            out.print(f"  {ranked[0][0]} because of: {why}", soft_wrap=True)
    out.print(f"priority: {result.priority}")
    out.print(f"language: {result.language}")
    if result.uncertain:
        reasons = [f"{h} {c:.2f} < {t:.2f}" for h, (c, t) in result.uncertain_heads.items()]
        if result.unseen_language:
            reasons.append(f"language {result.language} not among the model's")
        out.print(f"uncertain ({', '.join(reasons)}): a run escalates it to the LLM when that is "
                  "on, and flags it needs_review otherwise")
    else:
        out.print("confident: a run keeps the model's answer")


@app.command()
def doctor(
    model: ModelOpt = None,
    pushgateway: PushgatewayOpt = None,
    llm_backend: LLMBackendOpt = DEFAULT_LLM_BACKEND,
    llm_model: LLMModelOpt = None,
    llm_base_url: LLMBaseUrlOpt = None,
    llm_timeout: LLMTimeoutOpt = DEFAULT_LLM_TIMEOUT,
    cache_dir: CacheDirOpt = None,
) -> None:
    """Check that the model loads and matches its card, that the Pushgateway (when
    configured) answers, whether the LLM backend's key is configured (never printed) and that
    the LLM answer cache is usable. Exit 0 when healthy, 78 otherwise."""
    from .llm import LLMChoice, endpoint_problem, key_status

    ticket_model, path = _load(model)
    typer.echo(f"model ok: {path} (version {ticket_model.version}, "
               f"heads: {', '.join(ticket_model.heads)})")
    pushgateway_problem = _check_pushgateway(pushgateway)
    backend, key_source = key_status(llm_backend)
    model_name = llm_model or backend.default_model
    endpoint = llm_base_url or os.environ.get(backend.base_url_variable)
    at = f" at {endpoint}" if endpoint else ""
    if key_source:
        typer.echo(f"{backend.name} key: configured ({key_source}); uncertain tickets go to "
                   f"{model_name}{at}")
    elif endpoint and not backend.key_required:
        typer.echo(f"{backend.name} key: not configured ({backend.key_variable} or "
                   f"{backend.key_variable}_FILE), none needed: uncertain tickets go to "
                   f"{model_name}{at}")
    else:
        typer.echo(f"{backend.name} key: not configured ({backend.key_variable} or "
                   f"{backend.key_variable}_FILE); LLM escalation is off")
    llm_problem = endpoint_problem(LLMChoice(backend=llm_backend, model=llm_model,
                                             base_url=llm_base_url, timeout_seconds=llm_timeout,
                                             use_cache=False))
    _echo_cache_stats(cache_dir or default_cache_dir(), by_prompt=False)
    if llm_problem:
        raise ConfigError(f"{backend.name} endpoint{at} unusable: {llm_problem}",
                          "check --llm-base-url, --llm-model and the key")
    if pushgateway_problem:  # after the other checks, so one doctor run reports them all
        raise ConfigError(pushgateway_problem,
                          "check --pushgateway / TICKETCLF_PUSHGATEWAY_URL and its credentials")


def _check_pushgateway(url: str | None) -> str | None:
    """Print doctor's Pushgateway line; return what is wrong, if anything."""
    if not url:
        typer.echo("pushgateway: not configured (run metrics are not pushed)")
        return None
    from .metrics import Pushgateway

    gateway = Pushgateway(url)
    problem = gateway.problem()
    if problem is None:
        typer.echo(f"pushgateway ok: {gateway.safe_url}")
        return None
    return f"pushgateway {gateway.safe_url} unreachable: {problem}"


cache_app = typer.Typer(help="Inspect or empty the LLM answer cache.", no_args_is_help=True,
                        rich_markup_mode=None)
app.add_typer(cache_app, name="cache")


@cache_app.command("stats")
def cache_stats(cache_dir: CacheDirOpt = None) -> None:
    """Answers cached, size on disk and limit, and answers per backend, prompt version and
    model."""
    _echo_cache_stats(cache_dir or default_cache_dir(), by_prompt=True)


@cache_app.command("clear")
def cache_clear(
    cache_dir: CacheDirOpt = None,
    older_than: Annotated[float | None, typer.Option(
        "--older-than", min=0.0, max=36500.0, metavar="DAYS",
        help="Only delete answers stored more than DAYS days ago (retention: the cache holds "
        "redacted ticket texts).")] = None,
) -> None:
    """Delete cached LLM answers, all of them or those older than --older-than (the next runs
    pay for them again)."""
    from .cache import AnswerCache

    directory = cache_dir or default_cache_dir()
    with AnswerCache(directory) as cache:
        if older_than is None:
            removed = cache.clear()
        else:
            removed = cache.clear_older_than(older_than * 86400)
    which = "" if older_than is None else f" older than {older_than:g} days"
    typer.echo(f"cache cleared: {directory} ({removed:,} answers{which} removed)")


taxonomy_app = typer.Typer(help="A model's labels, what each means, and its priority rules.",
                           no_args_is_help=True, rich_markup_mode=None)
app.add_typer(taxonomy_app, name="taxonomy")


@taxonomy_app.command("show")
def taxonomy_show(
    model: ModelOpt = None,
    file: Annotated[Path | None, typer.Option(
        "--file", metavar="FILE", help="Check and show a taxonomy file instead of a model's "
        "(exit 78 naming what is wrong).")] = None,
    as_toml: Annotated[bool, typer.Option(
        "--toml", help="Print it as a taxonomy file: the template for `train --taxonomy`.")
    ] = False,
) -> None:
    """Print the model's taxonomy: per head its labels and their descriptions, the business
    the LLM is told about, and the priority rules in order (a model trained without
    --taxonomy has the built-in telecom one)."""
    from .taxonomy import Taxonomy

    if file is not None and model is not None:
        raise UsageError("--file and --model each name a taxonomy", "pass one of them")
    taxonomy = Taxonomy.load(file) if file is not None else _load(model)[0].taxonomy
    typer.echo(taxonomy.to_toml() if as_toml else taxonomy.describe(), nl=not as_toml)


def _echo_cache_stats(directory: Path, by_prompt: bool) -> None:
    from .cache import AnswerCache

    with AnswerCache(directory) as cache:
        stats = cache.stats()  # ConfigError when the cache cannot be used
    typer.echo(f"cache ok: {directory} ({stats.entries:,} answers, "
               f"{stats.bytes / 2**20:.1f} MiB of {stats.size_limit / 2**20:,.0f} MiB)")
    if by_prompt:
        for prompt_and_model, count in sorted(stats.by_prompt_and_model.items()):
            typer.echo(f"  {prompt_and_model}: {count:,}")


@app.command()
def train(
    data: Annotated[list[str], typer.Argument(
        help="Labelled CSV/JSONL files (optionally .gz), or - for stdin.", metavar="DATA...",
        show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", metavar="DIR",
                                         help="Model directory to write.")],
    input_format: InputFormatOpt = None,
    text_column: TextColumnOpt = None,
    encoding: EncodingOpt = "utf-8-sig",
    category_column: CategoryColumnOpt = "category",
    sentiment_column: SentimentColumnOpt = "sentiment",
    taxonomy: Annotated[Path | None, typer.Option(
        "--taxonomy", metavar="FILE", help="Your labels, their descriptions and priority rules "
        "(TOML; template: `ticketclf taxonomy show --toml`). The data's labels must be in it. "
        "Default: the built-in telecom taxonomy.")] = None,
    any_labels: Annotated[bool, typer.Option(
        "--any-labels", help="Without --taxonomy: accept any labels (the model's taxonomy is "
        "the labels seen, without descriptions but the built-in ones).")] = False,
    folds: Annotated[int, typer.Option(
        "--folds", metavar="N", min=0, max=20,
        help="Cross-validation folds for metrics and thresholds (0: none).")] = 3,
    target_precision: Annotated[float, typer.Option(
        "--target-precision", metavar="X", min=0.0, max=1.0,
        help="Per-head threshold keeps at least this precision on held-out folds.")] = 0.9,
    encoder: Annotated[bool, typer.Option(
        "--encoder", help="Add the pretrained all-MiniLM-L6-v2 sentence encoder: more accurate, "
        "much slower to train and classify (needs the optional install: README).")] = False,
    min_examples: Annotated[int | None, typer.Option(
        "--min-examples", metavar="N", min=1, show_default=False,
        help="Drop labels with fewer examples, "
        "with a warning naming them. Default: what the folds need (8 with --folds 3).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the model card as JSON.")] = False,
) -> None:
    """Train a model on labelled tickets; writes model.skops and card.json to the directory."""
    from .model.train import TrainSpec
    from .model.train import train as train_model
    from .taxonomy import Taxonomy

    spec = TrainSpec(files=data, input_format=input_format,
                     read=_read_options(text_column=text_column, encoding=encoding),
                     label_columns={"category": category_column, "sentiment": sentiment_column},
                     any_labels=any_labels,
                     taxonomy=Taxonomy.load(taxonomy) if taxonomy else None,
                     folds=folds, target_precision=target_precision, encoder=encoder,
                     min_examples=min_examples)
    err = _console(stderr=True)
    with (err.status("training") if err.is_terminal else nullcontext()) as status:
        card = train_model(spec, output, progress=status.update if status else lambda _m: None)
    if as_json:
        typer.echo(json.dumps(card, indent=2))
        return
    _print_training(card)


def _print_training(card: dict[str, Any]) -> None:
    from rich.table import Table

    err = _console(stderr=True)
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
def evaluate(
    data: Annotated[list[str], typer.Argument(
        help="Labelled CSV/JSONL files (optionally .gz), or - for stdin.", metavar="DATA...",
        show_default=False)],
    model: ModelOpt = None,
    input_format: InputFormatOpt = None,
    text_column: TextColumnOpt = None,
    encoding: EncodingOpt = "utf-8-sig",
    category_column: CategoryColumnOpt = "category",
    sentiment_column: SentimentColumnOpt = "sentiment",
    as_json: Annotated[bool, typer.Option("--json", help="Print the scores as JSON.")] = False,
    report: Annotated[Path | None, typer.Option(
        "--report", metavar="PATH",
        help="Also write a self-contained HTML report with plots.")] = None,
    llm: Annotated[bool, typer.Option(
        "--llm", help="Also score the hybrid: uncertain tickets escalated as in classify "
        "(needs the backend's key; answers are cached).")] = False,
    threshold: Annotated[float | None, typer.Option(
        "--llm-threshold", metavar="X", min=0.0, max=1.0,
        help="With --llm: escalation threshold. Default: the model card's.")] = None,
    llm_backend: LLMBackendOpt = DEFAULT_LLM_BACKEND,
    llm_model: LLMModelOpt = None,
    llm_base_url: LLMBaseUrlOpt = None,
    max_llm_calls: MaxLLMCallsOpt = None,
    llm_concurrency: LLMConcurrencyOpt = 4,
    llm_rpm: LLMRpmOpt = None,
    llm_timeout: LLMTimeoutOpt = DEFAULT_LLM_TIMEOUT,
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """Score a model against labelled tickets: accuracy, macro-F1, per-class scores, confusion
    matrix, calibration (ECE) and risk–coverage; with --llm, the hybrid beside it."""
    from .evaluate import evaluate_model
    from .io.labelled import read_labelled
    from .io.writers import AtomicFile
    from .report import render_report

    ticket_model, _ = _load(model)
    tickets = read_labelled(data, _read_options(text_column=text_column, encoding=encoding),
                            {"category": category_column, "sentiment": sentiment_column},
                            input_format)
    source = ", ".join(data)
    if llm:
        from .llm import EscalationStats, llm_config, open_escalator

        config = llm_config(_llm_choice(True, llm_backend, llm_model, llm_timeout, cache_dir,
                                        no_cache, _llm_settings(max_llm_calls, llm_concurrency,
                                                                llm_rpm), base_url=llm_base_url))
        stats = EscalationStats()
        with open_escalator(config, stats,  # type: ignore[arg-type]
                            taxonomy=ticket_model.taxonomy) as escalator:
            result = evaluate_model(ticket_model, tickets, source, escalator, stats, threshold)
    else:
        result = evaluate_model(ticket_model, tickets, source)
    if report is not None:
        with AtomicFile(report) as f:
            f.write(render_report(result).encode())
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        _print_evaluation(result)


def _print_evaluation(result: dict[str, Any]) -> None:
    from rich.table import Table

    out = _console()
    out.print(f"model {result['model_version']} on {result['data']} ({result['rows']:,} rows)")
    at = result["at_thresholds"]
    limits = ", ".join(f"{h} >= {t:.3f}" for h, t in at["thresholds"].items())
    kept = ", ".join(f"{h} accuracy {a:.3f}" for h, a in at["kept_accuracy"].items())
    out.print(f"[bold]at the model's thresholds ({limits}): {at['flagged']:.1%} flagged "
              f"(escalated, or needs_review); kept: {kept or '-'}[/bold]")
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
def compare(
    old_model: Annotated[Path, typer.Argument(
        help="The model in use (directory or its card.json).", show_default=False,
        metavar="OLD_MODEL")],
    new_model: Annotated[Path, typer.Argument(help="The candidate model.", show_default=False,
                                              metavar="NEW_MODEL")],
    data: Annotated[list[str], typer.Argument(
        help="Tickets (.csv, .jsonl, optionally .gz, or - for stdin), the same for both models.",
        show_default=False, metavar="DATA...")],
    input_format: InputFormatOpt = None,
    text_column: TextColumnOpt = None,
    id_column: IdColumnOpt = None,
    category_column: CategoryColumnOpt = "category",
    sentiment_column: SentimentColumnOpt = "sentiment",
    encoding: EncodingOpt = "utf-8-sig",
    delimiter: DelimiterOpt = None,
    show: Annotated[int, typer.Option(
        "--show", metavar="N", min=0,
        help="Changed tickets listed (all of them are in --json).")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
) -> None:
    """Run two models over the same tickets before promoting the new one: agreement, label-mix
    shift per class, the tickets that changed label and, where the data has labels, both
    models' scores side by side."""
    from .compare import compare_models

    old, _ = _load(old_model)
    new, _ = _load(new_model)
    result = compare_models(
        old, new, data, _read_options(text_column=text_column, id_column=id_column,
                                      encoding=encoding, delimiter=delimiter),
        {"category": category_column, "sentiment": sentiment_column}, input_format)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
    else:
        _print_comparison(result.as_dict(), show)


def _print_comparison(result: dict[str, Any], show: int) -> None:
    from rich.table import Table

    out = _console()
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
    old_d, new_d, between = (result["drift"][k] for k in ("old", "new", "label_divergence_between"))
    table = Table("drift from the training data", "old", "new", "between the models")
    for head in result["heads"]:
        table.add_row(f"{head} label divergence", _drift_figure(old_d["label_divergence"][head]),
                      _drift_figure(new_d["label_divergence"][head]), _drift_figure(between[head]))
    for key, name in (("unseen_token_ratio", "unseen words"),
                      ("unseen_language_ratio", "unseen languages")):
        table.add_row(name, _drift_figure(old_d[key], "{:.1%}"),
                      _drift_figure(new_d[key], "{:.1%}"), "")
    out.print(table)
    if show and result["changed_tickets"]:
        changed = Table("id", "changed", "text", title=f"changed tickets (first {show})",
                        title_justify="left")
        for t in result["changed_tickets"][:show]:
            what = ", ".join(f"{c['head']} {c['old']} -> {c['new']}" for c in t["changes"])
            changed.add_row(t["id"], what, t["excerpt"].replace("\n", " "))
        out.print(changed)


@app.command()
def review(
    output: Annotated[str, typer.Argument(
        help="A classify output (.csv or .jsonl, optionally .gz).", metavar="OUTPUT",
        show_default=False)],
    worklist: Annotated[str | None, typer.Option(
        "-o", "--output", metavar="WORKLIST", help="Worklist .csv or .jsonl (.gz allowed). "
        "Default: <OUTPUT>.worklist.csv.")] = None,
    limit: Annotated[int, typer.Option(
        "--limit", metavar="N", min=1, max=1_000_000,
        help="At most this many tickets, the most valuable "
        "labels first.")] = 1000,
    model: ModelOpt = None,
    cache_dir: CacheDirOpt = None,
    text_column: TextColumnOpt = None,
    id_column: IdColumnOpt = None,
    encoding: EncodingOpt = "utf-8-sig",
) -> None:
    """Write the worklist of tickets a person should label: needs_review, the LLM disagreeing
    with the local model, low confidence, unseen languages; most valuable first. Filled in,
    it is training data for `ticketclf learn --labels`. It holds the original ticket text,
    like the classify output."""
    from .review import ReviewSpec, build_worklist, default_worklist

    ticket_model, _ = _load(model)
    spec = ReviewSpec(output=output, worklist=worklist or default_worklist(output),
                      cache_dir=cache_dir or default_cache_dir(), limit=limit,
                      read=_read_options(text_column=text_column, id_column=id_column,
                                         encoding=encoding))
    report = build_worklist(spec, ticket_model)
    other = sorted(v for v in report.output_models if v and v != ticket_model.version)
    if other:
        typer.echo(f"warning: the output was classified by model {', '.join(other)}; the "
                   f"local answers are recomputed with {ticket_model.version} (pass --model)",
                   err=True)
    typer.echo(f"worklist: {spec.worklist} ({report.written:,} of {report.listed:,} tickets "
               f"to review, of {report.rows:,}; {_mix(report.reasons)})", err=True)


ModelsDirOpt = Annotated[Path | None, typer.Option(
    "--models-dir", envvar="TICKETCLF_MODELS_DIR", show_envvar=True, metavar="DIR",
    help="Models directory: one directory per version and current.json naming the one in use "
    "(classify --model DIR loads it).")]


@app.command()
def learn(
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", metavar="DIR", help="Write NEW to this model directory (the gate is "
        "reported and recorded in its card; nothing is promoted).")] = None,
    model: Annotated[Path | None, typer.Option(
        "--model", metavar="PATH", help="BASE: the model to learn from. Default: the models "
        "directory's current model, else TICKETCLF_MODEL, else the shipped model.")] = None,
    models_dir: ModelsDirOpt = None,
    cache_dir: CacheDirOpt = None,
    labels: Annotated[list[str] | None, typer.Option(
        "--labels", metavar="FILE", help="Labelled CSV/JSONL (a filled-in worklist, say), or a "
        "directory of them; repeatable. People's labels beat the LLM's.")] = None,
    min_llm_confidence: Annotated[float, typer.Option(
        "--min-llm-confidence", metavar="X", min=0.0, max=1.0,
        help="Learn only from LLM answers at least this confident.")] = 0.8,
    llm_sentiment: Annotated[bool, typer.Option(
        "--llm-sentiment", help="Learn the LLM's sentiment too, not only its category "
        "(people's labels always teach both).")] = False,
    tolerance: Annotated[float, typer.Option(
        "--tolerance", metavar="X", min=0.0, max=1.0,
        help="Macro-F1 NEW may lose per head on BASE's "
        "held-out data and still be promoted.")] = 0.005,
    text_column: TextColumnOpt = None,
    encoding: EncodingOpt = "utf-8-sig",
    as_json: Annotated[bool, typer.Option("--json", help="Print NEW's card as JSON.")] = False,
) -> None:
    """Train the next model on BASE's training data, the cached LLM answers and --labels;
    compare it with BASE on held-out data. With --models-dir, promote it when it is no worse on
    BASE's held-out data and better on the held-back new labels; exit 3 when it is not."""
    from .errors import NotPromoted
    from .learn import LearnSpec, check_outputs, learn_into_models_dir, resolve_base
    from .learn import learn as learn_model

    check_outputs(output, models_dir)
    spec = LearnSpec(base=resolve_base(model, models_dir),
                     cache_dir=cache_dir or default_cache_dir(), labels=labels or [],
                     min_llm_confidence=min_llm_confidence, llm_sentiment=llm_sentiment,
                     tolerance=tolerance,
                     read=_read_options(text_column=text_column, encoding=encoding))
    err = _console(stderr=True)
    with (err.status("learning") if err.is_terminal else nullcontext()) as status:
        progress = status.update if status else lambda _m: None
        if models_dir is not None:
            learned = learn_into_models_dir(spec, models_dir, progress)
        else:
            assert output is not None
            learned = learn_model(spec, output, progress)
    if as_json:
        typer.echo(json.dumps(learned.card, indent=2))
    else:
        _print_learned(learned.card)
    gate = learned.gate
    if models_dir is None:
        verdict = "passed" if gate.passed else "not passed: " + "; ".join(gate.reasons())
        typer.echo(f"NEW written to {learned.model_dir}; gate {verdict} (nothing is promoted "
                   "without --models-dir)", err=True)
    elif gate.passed:
        typer.echo(f"promoted {learned.card['version']} in {models_dir}", err=True)
    else:
        raise NotPromoted(f"not promoted: {'; '.join(gate.reasons())}",
                          f"the current model is unchanged; NEW stays at {learned.model_dir}")


def _print_learned(card: dict[str, Any]) -> None:
    from rich.table import Table

    lineage = card["lineage"]
    err = _console(stderr=True)
    rows = lineage["rows"]
    err.print(f"model {card['version']} from {lineage['base']['version']}: "
              f"{rows['base']:,} base + {rows['llm']:,} LLM + {rows['human']:,} human rows "
              f"({sum(lineage['held_out'].values()):,} new rows held back)")
    table = Table("held-out data", "head", "n", "BASE macro-F1", "NEW macro-F1",
                  title_justify="left")
    for name, scores in (("BASE's", lineage["gate"]["base_holdout"]),
                         ("new, held back", lineage["gate"]["new_slice"])):
        for head, s in scores.items():
            table.add_row(name, head, f"{s['n']:,}", f"{s['base']:.3f}", f"{s['new']:.3f}")
    err.print(table)


@app.command()
def promote(
    to: Annotated[str, typer.Option(
        "--to", metavar="PREVIOUS|VERSION|MODEL_DIR", help="PREVIOUS (roll back), a version in "
        "the models directory, or a model directory to adopt (copied in).")],
    models_dir: Annotated[Path, typer.Option(
        "--models-dir", envvar="TICKETCLF_MODELS_DIR", show_envvar=True, metavar="DIR",
        help="The models directory.")],
    if_empty: Annotated[bool, typer.Option(
        "--if-empty", help="Only when the models directory has no current model yet (a "
        "first install adopting the shipped model); otherwise do nothing.")] = False,
) -> None:
    """Point the models directory's current model at another one, atomically; the one it
    replaces becomes PREVIOUS."""
    from .model import versions

    existing = versions.read_pointer(models_dir)
    if if_empty and existing is not None:
        typer.echo(f"current: {existing.current} in {models_dir} (kept: --if-empty)")
        return
    version = versions.resolve_target(models_dir, to)
    pointer = versions.point_to(models_dir, version, f"promote --to {to}")
    typer.echo(f"current: {pointer.current} (previous: {pointer.previous or '-'}) in "
               f"{models_dir}")


def _drift_figure(value: float | None, spec: str = "{:.3f}") -> str:
    return "unknown" if value is None else spec.format(value)


def run() -> None:
    """Console-script entry point."""
    app(prog_name="ticketclf")


if __name__ == "__main__":
    run()
