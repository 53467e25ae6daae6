"""Opening inputs: paths or stdin, optionally gzip, with a count of bytes read for progress."""

from __future__ import annotations

import gzip
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import DataError, InputNotFound, UsageError

STDIN = "-"
INPUT_FORMATS = ("csv", "jsonl")
_SUFFIX_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_GZIP_MAGIC = b"\x1f\x8b"


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
    """One opened input: its display name, format, size when known, and a binary stream."""

    name: str
    format: str
    total_bytes: int | None
    counter: CountingReader
    stream: BinaryIO

    def close(self) -> None:
        self.stream.close()
        self.counter.close()


def format_from_name(name: str) -> str | None:
    path = Path(name)
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return _SUFFIX_FORMATS.get(suffixes[-1]) if suffixes else None


def open_source(name: str, input_format: str | None = None) -> Source:
    """Open a path or `-`; gzip is recognised by its magic bytes, the format by the name."""
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
        stream = gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[assignment]
    fmt = input_format or (None if name == STDIN else format_from_name(name))
    if fmt is None:
        fmt = _sniff_format(stream)
    if fmt not in INPUT_FORMATS:
        raise UsageError(f"unknown input format {fmt!r}", "use --input-format csv or jsonl")
    return Source(name=name, format=fmt, total_bytes=total, counter=counter, stream=stream)


def _sniff_format(stream: BinaryIO) -> str:
    """JSONL when the first non-blank character opens an object, CSV otherwise."""
    peek = getattr(stream, "peek", None)
    head = peek(512)[:512] if peek else b""
    head = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return "jsonl" if head[:1] == b"{" else "csv"
