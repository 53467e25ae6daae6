"""Atomic output files and the CSV / JSONL result writers."""

from __future__ import annotations

import contextlib
import csv
import errno
import functools
import gzip
import io
import json
import logging
import math
import os
import re
import stat
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from .. import interrupts
from ..errors import Interrupted, OutputError, UsageError
from ..schema import RESULT_COLUMN_NAMES, Reject, Result, result_values
from .sources import STDIN, suffix_of

# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_FIRST = frozenset(_FORMULA_PREFIXES)
# Characters a terminal acts on (ANSI escapes, cursor moves) when someone `cat`s a CSV: C0
# controls but tab, LF and CR (ordinary text), DEL, and the C1 controls (U+009B is CSI).
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_RESULT_NAMES = frozenset(RESULT_COLUMN_NAMES)
log = logging.getLogger("ticketclf.io")


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

    A symlink at `path` stays a link: its target is what gets replaced. Anything at `path`
    but a regular file (a device, a FIFO, a directory) is refused: a rename would destroy it
    (see `output_file` for writing into devices and FIFOs).
    """

    def __init__(self, path: Path) -> None:
        self.path = path  # as the user named it, for messages
        self._target = Path(os.path.realpath(path)) if path.is_symlink() else path
        self._tmp: IO[bytes] | None = None
        self._tmp_path: Path | None = None

    def __enter__(self) -> IO[bytes]:
        target = self._target
        directory = target.parent
        with contextlib.suppress(OSError):
            mode = os.stat(target).st_mode
            if not stat.S_ISREG(mode):
                kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
                raise OutputError(f"cannot write {self.path}: it is {kind}",
                                  "choose another -o")
        remove_stale_temporaries(target)
        while True:
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
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
            interrupts.check()  # a signal whose exception was lost still keeps the old file
        except Interrupted:
            self._discard()
            raise
        try:
            self._tmp.flush()
            os.fsync(self._tmp.fileno())
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self._tmp_path, 0o666 & ~umask)
            os.replace(self._tmp_path, self._target)
            self._tmp.close()  # after the rename: the lock is held until the file is in place
            _fsync_dir(self._target.parent)
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


class _DirectFile:
    """Writes straight into a device or FIFO (`-o /dev/null`, a named pipe): there is no file
    to replace atomically, and a rename over the node would destroy it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes]:
        try:  # a FIFO blocks here until its reader opens it, as with the shell's `>`
            fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise OutputError(f"cannot open {self.path}: {exc.strerror}",
                              "check the output location or choose another -o") from exc
        self._file = io.BufferedWriter(_OutputFileIO(fd, self.path))
        return self._file

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._file is not None
        if exc_type is not None:
            with contextlib.suppress(Exception):
                self._file.close()
            return
        try:
            self._file.close()  # the last flush: OutputError on a full device
        except OSError as error:
            raise _write_error(self.path, error) from error


def output_file(path: Path) -> contextlib.AbstractContextManager[IO[bytes]]:
    """The output (or rejects) file at `path`: written directly into a device or FIFO,
    through an AtomicFile otherwise (a symlink: its target is replaced)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # nothing there yet, or unreachable: AtomicFile creates it or says why
        return AtomicFile(path)
    return _DirectFile(path) if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) else AtomicFile(path)


class _OutputFileIO(io.FileIO):
    """The output's raw file: write errors become OutputError (exit 73), not a bug."""

    def __init__(self, fd: int, target: Path) -> None:
        super().__init__(fd, "wb")
        self.target = target

    def write(self, data: Any) -> int:
        try:
            return super().write(data)
        except OSError as exc:
            raise _write_error(self.target, exc) from exc


def _write_error(target: Path | str, exc: OSError) -> OutputError:
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


# What json.dumps leaves raw but should not: DEL and the C1 controls (terminal escapes;
# U+0085 is also a line break to str.splitlines()), and the Unicode line separators, which
# split lines for many JSONL readers. Escaped, they read back as the same text.
_JSON_ESCAPES = {c: f"\\u{c:04x}" for c in (*range(0x7F, 0xA0), 0x2028, 0x2029)}


def json_line(obj: Any) -> str:
    """One JSON object on exactly one line, whatever the text holds (UTF-8 kept readable),
    and always valid JSON: NaN and infinities (which JSONL input may hold) become null."""
    return _json(obj).translate(_JSON_ESCAPES) + "\n"


def _json(obj: Any) -> str:
    try:
        return json.dumps(obj, ensure_ascii=False, allow_nan=False)
    except ValueError:  # a non-finite number somewhere: rare, so looked for only now
        return json.dumps(_finite(obj), ensure_ascii=False, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def neutralise_formula(value: str) -> str:
    """Prefix a quote so that spreadsheets show the cell as text instead of running it."""
    return "'" + value if value.startswith(_FORMULA_PREFIXES) else value


def restore_formula(value: str) -> str:
    """Undo neutralise_formula, for a CSV this package wrote and now reads back (review,
    learn): the text must match the one the cache keyed."""
    return value[1:] if value[:1] == "'" and value[1:2] in _FORMULA_FIRST else value


def _cell(value: Any) -> str:
    if isinstance(value, str):  # nearly every cell: checked first, inline (the hot path)
        if not value.isprintable():  # one C pass; most cells are printable
            value = _CONTROLS.sub("\ufffd", value)
        return "'" + value if value[:1] in _FORMULA_FIRST else value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return ""  # as JSONL writes null
    if isinstance(value, (dict, list)):
        return neutralise_formula(_json(value).translate(_JSON_ESCAPES))
    return str(value)


@functools.lru_cache(maxsize=1024)
def output_names(keys: tuple[str, ...]) -> tuple[str, ...]:
    """The output names of input columns (or of one JSONL row's keys): a name that clashes
    with a result column becomes `input_<name>`, or `input_<name>_2`, `_3`... when the input
    has that name too. Rows of one file mostly share their keys: hence the cache."""
    taken = set(keys) | _RESULT_NAMES
    names = []
    for key in keys:
        if key in _RESULT_NAMES:
            new, n = f"input_{key}", 2
            while new in taken:
                new, n = f"input_{key}_{n}", n + 1
            taken.add(new)
            key = new
        names.append(key)
    return tuple(names)


def output_columns(input_columns: Sequence[str]) -> list[str]:
    """Output header: the input columns (renamed by output_names) then the result columns."""
    return [*output_names(tuple(input_columns)), *RESULT_COLUMN_NAMES]


class ResultWriter:
    """Writes results as CSV or JSONL to a binary stream; the header comes with the first
    batch so that JSONL inputs can name their columns from the first object."""

    def __init__(self, stream: IO[bytes], fmt: str, input_columns: Sequence[str]) -> None:
        _check_output_format(fmt)
        self.format = fmt
        # backslashreplace: a lone surrogate that got this far (from an exotic --encoding;
        # JSONL rows holding one are rejected) is written as its escape, not a crash.
        self._text = io.TextIOWrapper(stream, encoding="utf-8", errors="backslashreplace",
                                      newline="", write_through=False)
        self._input_columns = list(input_columns)
        self._known = frozenset(input_columns)
        self.dropped: Counter[str] = Counter()  # CSV: input keys not in the header -> rows
        # CRLF (RFC 4180): Python 3.11 quotes a field holding a lone CR only when CR is
        # part of the line terminator, and an unquoted CR would split the row for readers.
        self._csv = csv.writer(self._text, lineterminator="\r\n") if fmt == "csv" else None
        if self._csv is not None:
            self._csv.writerow([_cell(c) for c in output_columns(input_columns)])

    def write(self, results: Iterable[Result]) -> None:
        if self._csv is not None:
            self._csv.writerows(map(self._csv_row, results))
        else:
            for r in results:
                row = r.ticket.row
                obj = dict(zip(output_names(tuple(row)), row.values(), strict=True))
                obj.update(zip(RESULT_COLUMN_NAMES, result_values(r), strict=True))
                self._text.write(json_line(obj))
        self._text.flush()

    def _csv_row(self, r: Result) -> list[str]:
        row = r.ticket.row
        if row.keys() != self._known:  # a JSONL row with keys the header (line 1) lacks
            self.dropped.update(row.keys() - self._known)
        return ([_cell(row.get(c)) for c in self._input_columns]
                + [_cell(v) for v in result_values(r)])

    def detach(self) -> None:
        """Flush and let go of the stream without closing it (the owner closes it); say
        which input keys CSV output could not carry (names only: values may be personal)."""
        self._text.flush()
        self._text.detach()
        if self.dropped:
            names = sorted(self.dropped)
            shown = ", ".join(ascii(n[:40]) for n in names[:20])
            more = f" and {len(names) - 20} more" if len(names) > 20 else ""
            log.warning("%d input key(s) first seen after the first row are not in the CSV "
                        "header and were left out: %s%s; write JSONL (-o NAME.jsonl) to keep "
                        "every key", len(names), shown, more,
                        extra={"event": "keys_dropped", "keys": names[:100],
                               "cells": sum(self.dropped.values())})


class RejectWriter:
    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def write(self, rejects: Iterable[Reject]) -> None:
        for r in rejects:
            self._stream.write(json_line(r.as_dict()).encode("utf-8", "backslashreplace"))


# The output formats and the suffixes that name them (ResultWriter writes each).
OUTPUT_FORMATS = {"csv": (".csv",), "jsonl": (".jsonl", ".ndjson")}


def output_format_from_name(name: str) -> str | None:
    suffix = suffix_of(name)
    return next((fmt for fmt, suffixes in OUTPUT_FORMATS.items() if suffix in suffixes), None)


def output_format(path: str, explicit: str | None) -> str:
    fmt = explicit or ("csv" if path == STDIN else output_format_from_name(path))
    if fmt is None:
        raise UsageError(f"cannot tell the output format from {path!r}",
                         "name it .csv or .jsonl, or pass --output-format")
    _check_output_format(fmt)
    return fmt


def _check_output_format(fmt: str) -> None:
    if fmt not in OUTPUT_FORMATS:
        raise UsageError(f"unknown output format {fmt!r}",
                         "use --output-format " + " or ".join(OUTPUT_FORMATS))


def gzip_if_named(stream: IO[bytes], path: str) -> IO[bytes]:
    """Compress when the name ends in .gz; mtime 0 keeps reruns byte-identical."""
    if path.endswith(".gz"):
        return gzip.GzipFile(fileobj=stream, mode="wb", mtime=0, filename="")  # type: ignore[return-value]
    return stream


def stdout_stream() -> IO[bytes]:
    """stdout for results (`-o -`): a reader that goes away early (`| head`) or a full disk
    is an OutputError (exit 73, one line), not an internal error."""
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
        except OSError as exc:  # the reader went away, or the disk behind `> file` is full
            self._broken = True
            if isinstance(exc, BrokenPipeError):
                raise stdout_closed("all rows were written",
                                    "write to a file with -o to keep every row") from exc
            _detach_stdout()
            raise _write_error("stdout", exc) from exc


def stdout_closed(before: str, hint: str) -> OutputError:
    """The error for a reader of stdout that went away early (`| head`), with stdout pointed
    at /dev/null so that nothing fails on it again."""
    _detach_stdout()
    return OutputError(f"stdout was closed before {before} (the reader stopped early)", hint)


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
