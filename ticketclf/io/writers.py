"""Atomic output files and the CSV / JSONL result writers."""

from __future__ import annotations

import contextlib
import csv
import errno
import gzip
import io
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from ..errors import OutputError, UsageError
from ..schema import RESULT_COLUMN_NAMES, Reject, Result, result_values
from .sources import STDIN, format_from_name

OUTPUT_FORMATS = ("csv", "jsonl")
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_FIRST = frozenset(_FORMULA_PREFIXES)


try:
    import fcntl
except ImportError:  # not on Unix: no temp-file locks, so no sweeping of stale ones
    fcntl = None  # type: ignore[assignment]


class AtomicFile:
    """A file that appears at `path` complete or not at all.

    Writes go to a temporary file in the same directory; on success it is flushed, fsynced and
    renamed over the target. On any exception (and on interruption) the temporary is removed.
    A failed write (disk full, quota, I/O error) is an OutputError naming the target.

    A run killed outright (kill -9, OOM) cannot remove its temporary, so each one is held
    under an exclusive flock while it is written: the next AtomicFile for the same target
    removes the temporaries nobody holds any more, and leaves those of live runs alone.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tmp: IO[bytes] | None = None
        self._tmp_path: Path | None = None

    def __enter__(self) -> IO[bytes]:
        directory = self.path.parent
        remove_stale_temporaries(self.path)
        while True:
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                           dir=directory)
            except FileNotFoundError as exc:
                raise OutputError(f"output directory does not exist: {directory}",
                                  "create it or choose another -o") from exc
            except OSError as exc:
                raise OutputError(f"cannot create a file in {directory}: {exc.strerror}",
                                  "check the directory's permissions or choose another -o") from exc
            raw: _OutputFileIO | None = None
            try:
                if _lock(fd):
                    raw = _OutputFileIO(fd, self.path)
                    break
            except BaseException:  # SIGTERM right here, too: no temporary left behind
                raw.close() if raw is not None else os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            # Swept by another run between mkstemp and flock (it saw an unlocked temp): retry.
            os.close(fd)
        self._tmp_path = Path(tmp)
        self._tmp = io.BufferedWriter(raw)
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
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self._tmp_path, 0o666 & ~umask)
            os.replace(self._tmp_path, self.path)
            self._tmp.close()  # after the rename: the lock is held until the file is in place
            _fsync_dir(self.path.parent)
        except OutputError:
            self._discard()
            raise
        except OSError as exc:
            self._discard()
            raise _write_error(self.path, exc) from exc

    def _discard(self) -> None:
        assert self._tmp is not None and self._tmp_path is not None
        # closing a file on a full disk can fail again; removing it is what matters
        self._tmp_path.unlink(missing_ok=True)
        with contextlib.suppress(Exception):
            self._tmp.close()


class _OutputFileIO(io.FileIO):
    """The temporary's raw file: write errors become OutputError (exit 73), not a bug."""

    def __init__(self, fd: int, target: Path) -> None:
        super().__init__(fd, "wb")
        self.target = target

    def write(self, data: Any) -> int:
        try:
            return super().write(data)
        except OSError as exc:
            raise _write_error(self.target, exc) from exc


def _write_error(target: Path, exc: OSError) -> OutputError:
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    return OutputError(f"cannot write {target}: {exc.strerror or exc}",
                       "free some space or choose another -o" if full
                       else "check the output location or choose another -o")


def _lock(fd: int) -> bool:
    """Hold an exclusive lock on our temporary; False if it was swept before we got it."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocks only while a sweeper is looking at it
    except OSError:
        return True  # no locks on this file system: nothing sweeps it either
    return os.fstat(fd).st_nlink > 0


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Remove the temporaries of `target` left by runs that died (nobody holds their lock).
    Best effort: whatever cannot be checked or removed stays. Returns what was removed."""
    if fcntl is None:
        return []
    pattern = re.compile(rf"\.{re.escape(target.name)}\.[^.]+\.tmp")
    removed = []
    try:
        entries = [e for e in os.scandir(target.parent) if pattern.fullmatch(e.name)]
    except OSError:
        return []
    for entry in entries:
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.path.samestat(os.fstat(fd), os.stat(entry.path, follow_symlinks=False)):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass  # held by a live run, gone meanwhile, or not ours to remove
        finally:
            os.close(fd)
    return removed


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Line breaks to str.splitlines() and many JSONL readers, left raw by json.dumps.
_LINE_SEPARATORS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def json_line(obj: Any) -> str:
    """One JSON object on exactly one line, whatever the text holds (UTF-8 kept readable)."""
    return json.dumps(obj, ensure_ascii=False).translate(_LINE_SEPARATORS) + "\n"


def neutralise_formula(value: str) -> str:
    """Prefix a quote so that spreadsheets show the cell as text instead of running it."""
    return "'" + value if value.startswith(_FORMULA_PREFIXES) else value


def restore_formula(value: str) -> str:
    """Undo neutralise_formula, for a CSV this package wrote and now reads back (review,
    learn): the text must match the one the cache keyed."""
    return value[1:] if value[:1] == "'" and value[1:2] in _FORMULA_FIRST else value


def _cell(value: Any) -> str:
    if isinstance(value, str):  # nearly every cell: checked first, inline (the hot path)
        return "'" + value if value[:1] in _FORMULA_FIRST else value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return neutralise_formula(json.dumps(value, ensure_ascii=False))
    return str(value)


def output_columns(input_columns: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Output header: input columns (renamed `input_<name>` if they clash with a result
    column) then the result columns. Returns the header and the renames."""
    renames = {c: f"input_{c}" for c in input_columns if c in RESULT_COLUMN_NAMES}
    return [renames.get(c, c) for c in input_columns] + list(RESULT_COLUMN_NAMES), renames


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
            columns = self._input_columns
            self._csv.writerows(
                [_cell(r.ticket.row.get(c)) for c in columns] + [_cell(v) for v in result_values(r)]
                for r in results)
        else:
            for r in results:
                obj = {self._renames.get(k, k): v for k, v in r.ticket.row.items()}
                obj.update(zip(RESULT_COLUMN_NAMES, result_values(r), strict=True))
                self._text.write(json_line(obj))
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
            self._stream.write(json_line(r.as_dict()).encode())


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
    """stdout for results (`-o -`): a reader that goes away early (`| head`) is an
    OutputError (exit 73, one line), not an internal error."""
    return _StdoutStream(sys.stdout.buffer)  # type: ignore[return-value]


class _StdoutStream(io.RawIOBase):
    def __init__(self, out: IO[bytes]) -> None:
        super().__init__()
        self._out = out
        self._broken = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._guarded(self._out.write, data)
        return len(data)

    def flush(self) -> None:
        if not self._broken and not self.closed:
            self._guarded(self._out.flush)

    def close(self) -> None:  # stdout itself stays open: the interpreter owns it
        with contextlib.suppress(OutputError):
            self.flush()
        super().close()

    def _guarded(self, call: Any, *args: Any) -> None:
        if self._broken:
            return
        try:
            call(*args)
        except BrokenPipeError as exc:
            self._broken = True
            _detach_stdout()
            raise OutputError(
                "stdout was closed before all rows were written (the reader stopped early)",
                "write to a file with -o to keep every row") from exc


def _detach_stdout() -> None:
    """Point file descriptor 1 at /dev/null, so that the interpreter's last flush of stdout
    does not fail again on the closed pipe (the Python docs' advice for SIGPIPE)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (tests capture stdout): nothing to protect
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
