"""The exception tree and the exit codes: the one place errors become exit codes."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes; stable, documented in the README."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    NOT_PROMOTED = 3  # learn: NEW failed the promotion gate; the current model is unchanged
    DATA = 65  # EX_DATAERR
    NO_INPUT = 66  # EX_NOINPUT
    SOFTWARE = 70  # EX_SOFTWARE: a model worker process died mid-run
    CANT_CREATE = 73  # EX_CANTCREAT
    CONFIG = 78  # EX_CONFIG
    SIGINT = 130
    SIGTERM = 143


class TicketclfError(Exception):
    """An error the user can act on: a one-line message and, optionally, how to fix it."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(TicketclfError):
    exit_code = ExitCode.USAGE


class DataError(TicketclfError):
    """Input that cannot be read as tickets, or a reject rate over the limit."""

    exit_code = ExitCode.DATA


class InputNotFound(TicketclfError):
    exit_code = ExitCode.NO_INPUT


class OutputError(TicketclfError):
    exit_code = ExitCode.CANT_CREATE


class ConfigError(TicketclfError):
    """Bad model file, bad setting, LLM forced on without a key."""

    exit_code = ExitCode.CONFIG


class WorkerDied(TicketclfError):
    """A model worker process died mid-run (the OOM killer's SIGKILL, typically)."""

    exit_code = ExitCode.SOFTWARE


class NotPromoted(TicketclfError):
    exit_code = ExitCode.NOT_PROMOTED


class Interrupted(BaseException):
    """Raised from a signal handler so that `finally` blocks and atomic writers clean up.

    A BaseException so that library code catching `Exception` cannot swallow it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum

    @property
    def exit_code(self) -> ExitCode:
        import signal

        return ExitCode.SIGINT if self.signum == signal.SIGINT else ExitCode.SIGTERM


def exit_code_for(exc: BaseException) -> ExitCode:
    """The one mapping from an exception to the process exit code."""
    if isinstance(exc, (TicketclfError, Interrupted)):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.SIGINT
    return ExitCode.INTERNAL
