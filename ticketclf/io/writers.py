"""Atomic output files and the CSV / JSONL result writers."""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from ..errors import OutputError, UsageError
from ..schema import RESULT_COLUMNS, Reject, Result
from .sources import STDIN, format_from_name

OUTPUT_FORMATS = ("csv", "jsonl")
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class AtomicFile:
    """A file that appears at `path` complete or not at all.

    Writes go to a temporary file in the same directory; on success it is flushed, fsynced and
    renamed over the target. On any exception (and on interruption) the temporary is removed.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tmp: IO[bytes] | None = None
        self._tmp_path: Path | None = None

    def __enter__(self) -> IO[bytes]:
        directory = self.path.parent
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        except FileNotFoundError as exc:
            raise OutputError(f"output directory does not exist: {directory}",
                              "create it or choose another -o") from exc
        except OSError as exc:
            raise OutputError(f"cannot create a file in {directory}: {exc.strerror}",
                              "check the directory's permissions or choose another -o") from exc
        self._tmp_path = Path(tmp)
        self._tmp = os.fdopen(fd, "wb")
        return self._tmp

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tmp is not None and self._tmp_path is not None
        if exc_type is not None:
            self._discard()
            return
        try:
            self._tmp.flush()
            os.fsync(self._tmp.fileno())
            self._tmp.close()
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self._tmp_path, 0o666 & ~umask)
            os.replace(self._tmp_path, self.path)
            _fsync_dir(self.path.parent)
        except OSError as exc:
            self._discard()
            raise OutputError(f"cannot write {self.path}: {exc.strerror}",
                              "free some space or choose another -o") from exc

    def _discard(self) -> None:
        assert self._tmp is not None and self._tmp_path is not None
        # closing a file on a full disk can fail again; removing it is what matters
        with contextlib.suppress(OSError):
            self._tmp.close()
        self._tmp_path.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def neutralise_formula(value: str) -> str:
    """Prefix a quote so that spreadsheets show the cell as text instead of running it."""
    return "'" + value if value.startswith(_FORMULA_PREFIXES) else value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return neutralise_formula(value)
    if isinstance(value, (dict, list)):
        return neutralise_formula(json.dumps(value, ensure_ascii=False))
    return str(value)


def output_columns(input_columns: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Output header: input columns (renamed `input_<name>` if they clash with a result
    column) then the result columns. Returns the header and the renames."""
    renames = {c: f"input_{c}" for c in input_columns if c in RESULT_COLUMNS}
    return [renames.get(c, c) for c in input_columns] + list(RESULT_COLUMNS), renames


class ResultWriter:
    """Writes results as CSV or JSONL to a binary stream; the header comes with the first
    batch so that JSONL inputs can name their columns from the first object."""

    def __init__(self, stream: IO[bytes], fmt: str, input_columns: Sequence[str]) -> None:
        if fmt not in OUTPUT_FORMATS:
            raise UsageError(f"unknown output format {fmt!r}", "use --output-format csv or jsonl")
        self.format = fmt
        self._text = io.TextIOWrapper(stream, encoding="utf-8", newline="", write_through=False)
        self._header, self._renames = output_columns(input_columns)
        self._input_columns = list(input_columns)
        # CRLF (RFC 4180): Python 3.11 quotes a field holding a lone CR only when CR is
        # part of the line terminator, and an unquoted CR would split the row for readers.
        self._csv = csv.writer(self._text, lineterminator="\r\n") if fmt == "csv" else None
        if self._csv is not None:
            self._csv.writerow(self._header)

    def write(self, results: Iterable[Result]) -> None:
        if self._csv is not None:
            for r in results:
                row = r.ticket.row
                cells = [_cell(row.get(c)) for c in self._input_columns]
                cells += [_cell(v) for v in r.columns().values()]
                self._csv.writerow(cells)
        else:
            for r in results:
                obj = {self._renames.get(k, k): v for k, v in r.ticket.row.items()}
                obj.update(r.columns())
                self._text.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self._text.flush()

    def detach(self) -> None:
        """Flush and let go of the stream without closing it (the owner closes it)."""
        self._text.flush()
        self._text.detach()


class RejectWriter:
    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def write(self, rejects: Iterable[Reject]) -> None:
        for r in rejects:
            self._stream.write(json.dumps(r.as_dict(), ensure_ascii=False).encode() + b"\n")


def output_format(path: str, explicit: str | None) -> str:
    fmt = explicit or ("csv" if path == STDIN else format_from_name(path))
    if fmt is None:
        raise UsageError(f"cannot tell the output format from {path!r}",
                         "name it .csv or .jsonl, or pass --output-format")
    if fmt not in OUTPUT_FORMATS:
        raise UsageError(f"unknown output format {fmt!r}", "use --output-format csv or jsonl")
    return fmt


def gzip_if_named(stream: IO[bytes], path: str) -> IO[bytes]:
    """Compress when the name ends in .gz; mtime 0 keeps reruns byte-identical."""
    if path.endswith(".gz"):
        return gzip.GzipFile(fileobj=stream, mode="wb", mtime=0, filename="")  # type: ignore[return-value]
    return stream


def stdout_stream() -> IO[bytes]:
    return sys.stdout.buffer
