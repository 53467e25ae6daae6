"""Opening inputs: paths or stdin, optionally gzip, with a count of bytes read for progress."""

from __future__ import annotations

import codecs
import gzip
import io
import os
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import DataError, InputNotFound, UsageError

STDIN = "-"
HEAD_BYTES = 512  # what is peeked at to tell an unnamed input's format (readers.py)
_GZIP_MAGIC = b"\x1f\x8b"
# Byte-order marks that say the encoding (UTF-32 first: its LE mark starts like UTF-16's).
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


class CountingReader(io.RawIOBase):
    """A raw binary stream that counts the bytes taken from the one it wraps."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        # read1 returns what is available without waiting for a full buffer: pipes stream.
        reader = getattr(self._inner, "read1", self._inner.read)
        data = reader(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.bytes_read += n
        return n

    def close(self) -> None:
        if self._inner is not sys.stdin.buffer:
            self._inner.close()
        super().close()


@dataclass
class Source:
    """One opened input: its display name, size when known, a binary stream (gzip undone) and
    its first bytes."""

    name: str
    total_bytes: int | None
    counter: CountingReader
    stream: BinaryIO
    head: bytes = b""  # the first HEAD_BYTES of the data, left in the stream
    bom_encoding: str | None = None  # UTF-16 / UTF-32 when the data starts with their BOM

    def close(self) -> None:
        self.stream.close()
        self.counter.close()


def suffix_of(name: str) -> str | None:
    """The suffix that names a file's format, lower case, under any `.gz`: `.csv` for
    `Tickets.CSV.gz`."""
    suffixes = [s.lower() for s in Path(name).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return suffixes[-1] if suffixes else None


def open_source(name: str) -> Source:
    """Open a path or `-`; gzip is recognised by its magic bytes (the format is the
    reader's business: readers.INPUT_FORMATS)."""
    if name == STDIN:
        raw: BinaryIO = sys.stdin.buffer
        total = None
    else:
        path = Path(name)
        if not path.exists():
            raise InputNotFound(f"input file not found: {name}", "check the path")
        if path.is_dir():
            raise UsageError(f"input is a directory, not a file: {name}")
        try:
            raw = open(path, "rb")  # noqa: SIM115 - closed by Source.close
        except PermissionError as exc:
            raise DataError(f"cannot read {name}: {exc.strerror}", "check its permissions") from exc
        total = os.fstat(raw.fileno()).st_size
    counter = CountingReader(raw)
    buffered = io.BufferedReader(counter, buffer_size=1 << 16)
    stream: BinaryIO = buffered
    if buffered.peek(2)[:2] == _GZIP_MAGIC:
        stream = _CheckedGzip(name, fileobj=buffered, mode="rb")  # type: ignore[assignment]
    head = _peek(stream, HEAD_BYTES)
    bom = next((enc for mark, enc in _BOMS if head.startswith(mark)), None)
    return Source(name=name, total_bytes=total, counter=counter, stream=stream, head=head,
                  bom_encoding=bom)


def _peek(stream: BinaryIO, size: int) -> bytes:
    peek = getattr(stream, "peek", None)
    return peek(size)[:size] if peek else b""


class _CheckedGzip(gzip.GzipFile):
    """A gzip input whose damage is a DataError naming the file (exit 65), not an EOFError
    or BadGzipFile from deep in the reader (exit 1)."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source_name = name

    def read(self, size: int | None = -1) -> bytes:
        return self._checked(super().read, size)

    def read1(self, size: int = -1) -> bytes:
        return self._checked(super().read1, size)

    def peek(self, n: int) -> bytes:
        return self._checked(super().peek, n)

    def _checked(self, call: Any, size: Any) -> bytes:
        try:
            data: bytes = call(size)
        except EOFError as exc:
            raise DataError(f"{self.source_name} is truncated: its gzip data ends early",
                            _GZIP_HINT) from exc
        except gzip.BadGzipFile as exc:
            what = ("has bytes after its gzip data" if str(exc).startswith("Not a gzipped")
                    else f"holds corrupt gzip data ({exc})")
            raise DataError(f"{self.source_name} {what}", _GZIP_HINT) from exc
        except zlib.error as exc:
            raise DataError(f"{self.source_name} holds corrupt gzip data ({exc})",
                            _GZIP_HINT) from exc
        return data


_GZIP_HINT = "fetch or export the file again; gzip -t checks a file"
