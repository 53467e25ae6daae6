"""Logging: JSON lines on stderr for machines, a console format for people.

Log records carry ids, counts, durations, paths and hashes; never ticket text and never a key.
Every record of a run carries its `run_id`, so one night's lines can be found together.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

LogFormat = Literal["json", "console"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class _RunId(logging.Filter):
    """Stamps the run's id on every record that passes the handler (all threads, all loggers)."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id

    def filter(self, record: logging.LogRecord) -> bool:
        record.run_id = self.run_id
        return True


def setup_logging(fmt: LogFormat | None, level: LogLevel | None = None,
                  run_id: str | None = None) -> None:
    """`fmt` None picks console on a terminal and JSON otherwise; `level` None means INFO."""
    if fmt is None:
        fmt = "console" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter(
            "{asctime}{levelname}{name}{message}", style="{",
            rename_fields={"asctime": "timestamp", "levelname": "level", "name": "logger"},
            datefmt="%Y-%m-%dT%H:%M:%S%z",
        ))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s",
                                               datefmt="%H:%M:%S"))
    if run_id is not None:
        handler.addFilter(_RunId(run_id))
    root = logging.getLogger("ticketclf")
    root.handlers[:] = [handler]
    root.setLevel(level or "INFO")
    root.propagate = False
