"""The command line's edges: the one error boundary, --help that fits a terminal, and
predict's one-ticket frictions."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable

import pytest

from ticketclf import cli as cli_module

from .conftest import lose_a_signal, ticketclf_cmd


def test_no_command_prints_the_help_and_exits_2(cli):
    r = cli()
    assert r.code == 2
    assert "classify" in r.stderr and "Usage" in r.stderr


def run_added_command(cli, function: Callable[[], None]):
    """Run `function` as a command added to the app as any command is (and then removed)."""
    cli_module.app.command("added-for-test")(function)
    try:
        return cli("added-for-test")
    finally:
        cli_module.app.registered_commands.pop()


def test_a_command_added_without_any_decorator_still_maps_its_errors_to_exit_codes(cli):
    """No per-command decorator: the app's group maps what any command raises."""

    def explode() -> None:
        raise ValueError("boom")

    r = run_added_command(cli, explode)
    assert r.code == 1
    assert "internal error: ValueError: boom" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_signal_whose_exception_a_command_lost_still_ends_it_with_the_signals_code(cli):
    """Raised inside C code that clears it, a handler's Interrupted vanishes; the boundary
    still ends the command as the signal asked (143), not with 0."""
    import signal

    r = run_added_command(cli, lambda: lose_a_signal(signal.SIGTERM))
    assert r.code == 143
    assert "interrupted: no output written" in r.stderr


@pytest.mark.parametrize("command", ["classify", "train", "evaluate", "learn"])
def test_help_at_80_columns_cuts_nothing_and_names_no_python_types(command):
    env = {**os.environ, "COLUMNS": "80", "TERM": "xterm"}
    out = subprocess.run(ticketclf_cmd(command, "--help"), capture_output=True, text=True,
                         env=env, timeout=60).stdout
    assert "…" not in out
    assert "<int range>" not in out and "<float range>" not in out
    assert max(len(line) for line in out.splitlines()) <= 80


def test_help_names_every_environment_variable_in_full():
    env = {**os.environ, "COLUMNS": "80"}
    out = subprocess.run(ticketclf_cmd("classify", "--help"), capture_output=True, text=True,
                         env=env, timeout=60).stdout
    joined = " ".join(out.split())
    for variable in ("TICKETCLF_PUSHGATEWAY_URL", "TICKETCLF_LLM_BACKEND", "TICKETCLF_CACHE_DIR"):
        assert variable in joined


def test_predict_refuses_an_empty_ticket_with_a_usage_error(cli):
    r = cli("predict", "   ")
    assert r.code == 2
    assert "the ticket text is empty" in r.stderr


def test_predict_says_how_to_pass_a_text_that_starts_with_a_dash(cli):
    r = cli("predict", "-20 pounds off my bill?")
    assert r.code == 2
    assert "ticketclf predict -- " in r.stderr
    ok = cli("predict", "--json", "--", "-20 pounds off my bill?")
    assert ok.code == 0, ok


def test_predict_says_whether_a_run_would_escalate_the_ticket(cli):
    r = cli("predict", "--json", "--llm-threshold", "1.0", "my bill is wrong")
    assert r.code == 0, r
    payload = json.loads(r.stdout)
    assert payload["uncertain"] is True and set(payload["uncertain_heads"]) == {
        "category", "sentiment"}
    confident = json.loads(cli("predict", "--json", "--llm-threshold", "0.0",
                               "my bill is wrong").stdout)
    assert confident["uncertain"] is False and confident["language"] == "en"
