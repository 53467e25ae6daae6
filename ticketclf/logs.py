"""Logging: JSON lines on stderr for machines, a console format for people.

Log records carry ids, counts, durations and hashes; never ticket text and never a key.
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

LOG_FORMATS = ("json", "console")


def setup_logging(fmt: str | None, level: str = "INFO") -> None:
    """`fmt` None picks console on a terminal and JSON otherwise."""
    if fmt is None:
        fmt = "console" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(
            "{asctime}{levelname}{name}{message}", style="{",
            rename_fields={"asctime": "timestamp", "levelname": "level", "name": "logger"},
            datefmt="%Y-%m-%dT%H:%M:%S%z",
        ))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s",
                                               datefmt="%H:%M:%S"))
    root = logging.getLogger("ticketclf")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
