"""Stream tickets from CSV / JSONL sources in batches; rows that cannot be classified become
rejects with their line number and reason. Memory is bounded by the batch size and by the
record cap: no line or record is ever held longer than `ReadOptions.record_limit`.

INPUT_FORMATS (at the end) is the one table of input formats: a new one is its entry there and
its record generator, a TicketReader method, in this file."""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import re
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import DataError, UsageError
from ..schema import Reject, Ticket
from .sources import STDIN, Source, suffix_of

TEXT_COLUMNS = ("text", "description", "body", "message", "ticket_text", "content")
ID_COLUMNS = ("id", "ticket_id", "ticketid", "ticket_number", "case_id", "case_number", "number")
SUBJECT_COLUMN = "subject"  # joined before the text column found (subject + body, Zendesk's
#                             Subject + Description)
MAX_FIELD_BYTES = 2 * 1024 * 1024  # a csv field beyond this is a broken quote, not a ticket
CSV_RECORD_CHARS = 4 * MAX_FIELD_BYTES  # a record beyond this is not a row of tickets
EXCERPT_CHARS = 80
DELIMITERS = ",;\t|"
SNIFF_CHARS = 1024
_DELIMITER_NAMES = {"\\t": "\t", "tab": "\t"}  # what a shell passes for a tab
_UTF8 = ("utf-8", "utf-8-sig")
_SEP_LINE = re.compile(r"sep=(.)\r?\n?", re.IGNORECASE)  # Excel's delimiter line
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # \ud800-\udfff, paired or not
_C1 = re.compile("[\x80-\x9f]")

csv.field_size_limit(MAX_FIELD_BYTES)
log = logging.getLogger("ticketclf.io")


@dataclass(frozen=True)
class ReadOptions:
    """How to read inputs; invalid values are a UsageError as soon as the options are built."""

    text_column: str | None = None
    id_column: str | None = None
    encoding: str = "utf-8-sig"
    batch_size: int = 1000
    max_text_chars: int = 20_000
    delimiter: str | None = None  # CSV; None: Excel's `sep=` line, else sniffed
    max_record_chars: int | None = None  # None: see record_limit

    def __post_init__(self) -> None:
        try:
            info = codecs.lookup(self.encoding)
        except LookupError:
            raise UsageError(f"unknown encoding {self.encoding!r}",
                             "pass a codec name, e.g. utf-8, cp1252, latin-1 or utf-16") from None
        if not getattr(info, "_is_text_encoding", True):  # base64, zlib: bytes-to-bytes codecs
            raise UsageError(f"{self.encoding!r} is not a text encoding",
                             "pass a codec name, e.g. utf-8, cp1252, latin-1 or utf-16")
        if self.delimiter is not None:
            delimiter = _DELIMITER_NAMES.get(self.delimiter, self.delimiter)
            if len(delimiter) != 1 or delimiter in "\"\r\n":
                raise UsageError(f"bad --delimiter {self.delimiter!r}",
                                 "give one character, e.g. ';', '|' or '\\t' for tab")
            object.__setattr__(self, "delimiter", delimiter)

    def record_limit(self, fmt: str) -> int:
        """Characters a record (CSV record, JSONL line) may have: longer ones are rejected
        whole."""
        if self.max_record_chars is not None:
            return self.max_record_chars
        return INPUT_FORMATS[fmt].record_chars(self)


@dataclass
class Batch:
    tickets: list[Ticket] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.tickets) + len(self.rejects)


@dataclass(frozen=True)
class ColumnMap:
    """Where the text and the id come from. `text` has two names when subject + body join."""

    text: tuple[str, ...]
    id: str | None

    def text_of(self, row: dict[str, Any]) -> Any:
        if len(self.text) == 1:
            return row.get(self.text[0])
        parts = [row.get(c) for c in self.text]
        return "\n".join(str(p) for p in parts if p not in (None, ""))


def column_key(name: str) -> str:
    """How auto-detection compares names: `Ticket ID`, `ticket_id` and `TicketId` are one."""
    return re.sub(r"[\s_-]+", "", name).lower()


def _has_text(value: Any) -> bool:
    return value not in (None, "") and (not isinstance(value, str) or not value.isspace())


def resolve_columns(columns: Sequence[str], options: ReadOptions, source: str,
                    rows: Sequence[dict[str, Any]] = ()) -> ColumnMap:
    """Pick the text and id columns: the user's choice, else the first known name found (by
    column_key). Among the known text columns present, the first that holds text in `rows`
    (the first batch) wins: an empty `text` beside a full `description` picks `description`.
    A `subject` column is joined before the text column picked."""
    by_key: dict[str, str] = {}
    for c in columns:
        by_key.setdefault(column_key(c), c)
    if options.text_column:
        if options.text_column not in columns:
            raise DataError(
                f"{source}: no column {options.text_column!r}; columns found: "
                f"{', '.join(columns) or '(none)'}",
                "pass one of them with --text-column",
            )
        text: tuple[str, ...] = (options.text_column,)
    else:
        found = [by_key[k] for k in dict.fromkeys(map(column_key, TEXT_COLUMNS)) if k in by_key]
        if not found:
            raise DataError(
                f"{source}: no text column found; columns found: {', '.join(columns) or '(none)'}",
                "name the one holding the ticket text with --text-column",
            )
        chosen = next((c for c in found if any(_has_text(r.get(c)) for r in rows)), found[0])
        subject = by_key.get(SUBJECT_COLUMN)
        text = (subject, chosen) if subject is not None else (chosen,)
    if options.id_column:
        if options.id_column not in columns:
            raise DataError(
                f"{source}: no column {options.id_column!r}; columns found: {', '.join(columns)}",
                "pass one of them with --id-column",
            )
        id_col: str | None = options.id_column
    else:
        id_col = next((by_key[k] for k in map(column_key, ID_COLUMNS) if k in by_key), None)
    return ColumnMap(text=text, id=id_col)


def _excerpt(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text[:EXCERPT_CHARS]


@dataclass(slots=True)
class _Row:
    """A parsed input row before the columns are resolved."""

    data: dict[str, Any]
    line: int


class TicketReader:
    """Reads one source. `columns` is known after the header (CSV) or first object (JSONL);
    the text and id columns are chosen on the first batch's rows."""

    def __init__(self, source: Source, options: ReadOptions,
                 input_format: str | None = None) -> None:
        self.source = source
        self.options = options
        self.format = input_format or format_of(source)
        self.columns: list[str] | None = None
        self.column_map: ColumnMap | None = None
        # A UTF-16/32 BOM cannot start UTF-8 text: Excel's "Unicode text" is read as what it is.
        utf8 = codecs.lookup(options.encoding).name in _UTF8
        self.encoding = source.bom_encoding if source.bom_encoding and utf8 else options.encoding
        self._limit = options.record_limit(self.format)
        self._bytes = _CountedBytes(source.stream)
        self._text = io.TextIOWrapper(
            self._bytes, encoding=self.encoding, errors="strict", newline=""  # type: ignore[type-var]
        )
        self._lines = _Lines(self._text, self._limit)
        self._warn_c1 = _decodes_to_c1(self.encoding)

    def batches(self) -> Iterator[Batch]:
        records = INPUT_FORMATS[self.format].records(self)
        pending: list[_Row | Reject] = []  # the first batch, until the columns are chosen
        batch = Batch()
        try:
            for record in records:
                if self.column_map is None:
                    pending.append(record)
                    if len(pending) < self.options.batch_size:
                        continue
                    ready, pending = self._resolve(pending), []
                else:
                    ready = [self._convert(record)]
                _add(batch, ready)
                if len(batch) >= self.options.batch_size:
                    yield batch
                    batch = Batch()
            if self.column_map is None:  # fewer rows than a batch, or a header only
                _add(batch, self._resolve(pending))
        except UnicodeDecodeError as exc:
            raise self._decode_error(exc) from exc
        if len(batch):
            yield batch

    def _resolve(self, pending: list[_Row | Reject]) -> list[Ticket | Reject]:
        if self.columns is not None:  # else no row yet (JSONL): only rejects are pending
            rows = [p.data for p in pending if isinstance(p, _Row)]
            self.column_map = resolve_columns(self.columns, self.options, self.source.name, rows)
        return [self._convert(p) for p in pending]

    def _convert(self, record: _Row | Reject) -> Ticket | Reject:
        return record if isinstance(record, Reject) else self._ticket(record.data, record.line)

    def _decode_error(self, exc: UnicodeDecodeError) -> DataError:
        """Where the bad bytes are: the decoder's input is the tail of what was read."""
        offset = max(0, self._bytes.count - len(exc.object) + exc.start)
        where = f"byte offset {offset:,}"
        if "a\n".encode(self.encoding).endswith(b"a\n"):  # ASCII-compatible: count 0x0a
            line = self._bytes.newlines - exc.object[exc.start:].count(b"\n") + 1
            where = f"line {line:,}, {where}"
        bad = exc.object[exc.start:exc.end]
        name = codecs.lookup(self.encoding).name
        others = [e for e in ("cp1252", "latin-1")
                  if codecs.lookup(e).name != name and _decodes(bad, e)]
        hint = ("pass its encoding: " + " or ".join(
            f"--encoding {e}" + (" (what Excel writes on Windows)" if e == "cp1252" else "")
            for e in others)) if others else "pass its encoding with --encoding"
        return DataError(f"{self.source.name} is not valid {self.encoding} text at {where} "
                         f"(byte {bad[:4]!r})", hint)

    def _ticket(self, row: dict[str, Any], line: int) -> Ticket | Reject:
        assert self.column_map is not None
        raw = self.column_map.text_of(row)
        name = self.source.name
        if raw is None:
            return Reject(name, line, "missing_text", _excerpt(row))
        text = raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False)
        if "\x00" in text:
            return Reject(name, line, "nul_byte", _excerpt(text.replace("\x00", "\\0")))
        if not text.strip():
            return Reject(name, line, "empty_text", _excerpt(row))
        if len(text) > self.options.max_text_chars:
            return Reject(name, line, "text_too_long", _excerpt(text))
        if self._warn_c1 and _C1.search(text):
            self._warn_c1 = False  # once per input
            log.warning("%s: text read as %s holds C1 control characters, which is what "
                        "cp1252 text (Excel's euro sign and curly quotes) looks like read as "
                        "latin-1; if so, rerun with --encoding cp1252", name, self.encoding,
                        extra={"event": "c1_controls", "source": name})
        id_col = self.column_map.id
        ticket_id = row.get(id_col) if id_col else None
        ident = str(ticket_id) if ticket_id not in (None, "") else f"{name}:{line}"
        return Ticket(source=name, line=line, id=ident, text=text, row=row)

    def _csv_records(self) -> Iterator[_Row | Reject]:
        name, lines = self.source.name, self._lines
        reader = csv.reader(lines, delimiter=self._delimiter(), strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{name} is empty", "export the tickets with a header row") from None
        except csv.Error as exc:
            raise DataError(f"{name}: cannot read the header: {exc}") from None
        except _RecordTooLong:
            raise DataError(f"{name}: the header is longer than {self._limit:,} characters",
                            "is it a CSV file? pass --input-format if not") from None
        header = [h.strip() for h in header]
        while header and not header[-1]:
            header.pop()  # Excel's stray empty columns: their fields are dropped below
        duplicates = sorted({h for h in header if header.count(h) > 1})
        if duplicates:
            raise DataError(
                f"{name}: column names repeat in the header: {', '.join(duplicates)}",
                "rename them so each column has one name",
            )
        self.columns = header
        width = len(header)
        line = lines.number + 1  # the physical line where the next record starts
        while True:
            lines.start_record()
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield Reject(name, line, f"malformed_csv: {exc} (through line {lines.number})", "")
                line = lines.number + 1
                continue
            except _RecordTooLong:
                yield Reject(name, line, f"record_too_long: over {self._limit:,} characters", "")
                line = lines.number + 1
                continue
            start, line = line, lines.number + 1
            if not fields:
                continue  # a blank line holds no ticket
            if len(fields) > width and not any(fields[width:]):
                del fields[width:]
            if len(fields) != width:
                yield Reject(
                    name, start, f"wrong_field_count: expected {width}, got {len(fields)}",
                    _excerpt(",".join(fields)),
                )
                continue
            yield _Row(dict(zip(header, fields, strict=True)), start)

    def _delimiter(self) -> str:
        """--delimiter, else Excel's `sep=` first line (skipped either way), else sniffed on
        the first KB: csv.Sniffer among , ; tab |, trusted only when its choice is in the
        header line, else the one the header holds most, else comma. From stdin only the
        header line is looked at: waiting for a KB would stall a stream."""
        lines = self._lines
        ahead = SNIFF_CHARS if self.source.name != STDIN else 1
        head = lines.peek(ahead)
        sep = _SEP_LINE.fullmatch(head[0]) if head else None
        if sep:
            next(lines)
            head = lines.peek(ahead)
        if self.options.delimiter is not None:
            return self.options.delimiter
        if sep:
            return sep.group(1)
        if not head:
            return ","
        sample = "".join(head)[:SNIFF_CHARS]
        if "\n" in sample.rstrip("\r\n"):
            sample = sample[:sample.rfind("\n") + 1]  # whole lines only
        try:
            sniffed = csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
        except csv.Error:
            sniffed = ""
        if sniffed and sniffed in DELIMITERS and sniffed in head[0]:
            return sniffed
        best = max(DELIMITERS, key=head[0].count)  # ties go to the first: comma
        return best if best in head[0] else ","

    def _jsonl_records(self) -> Iterator[_Row | Reject]:
        name, lines = self.source.name, self._lines
        while True:
            lines.start_record()
            try:
                line = next(lines)
            except StopIteration:
                return
            except _RecordTooLong:
                yield Reject(name, lines.number, "line_too_long", "")
                continue
            line_no = lines.number
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                yield Reject(name, line_no, f"invalid_json: {exc.msg}", _excerpt(line))
                continue
            except ValueError as exc:  # e.g. a number too long to convert
                yield Reject(name, line_no, f"invalid_json: {exc}", _excerpt(line))
                continue
            if not isinstance(obj, dict):
                yield Reject(name, line_no, "not_an_object", _excerpt(line))
                continue
            if _SURROGATE_ESCAPE.search(line) and _holds_lone_surrogate(obj):
                # not text in any encoding: no writer (nor the LLM's JSON) could carry it
                yield Reject(name, line_no, "invalid_unicode: a lone surrogate (\\ud800-\\udfff)",
                             _excerpt(line))
                continue
            if self.columns is None:
                self.columns = list(obj)
            yield _Row(obj, line_no)

    def close(self) -> None:
        self.source.close()


@dataclass(frozen=True)
class InputFormat:
    """One input format: the file suffixes that name it, whether a text starts like it (for
    stdin and names that do not tell), the most characters one record may hold, and the
    TicketReader method that yields its records."""

    suffixes: tuple[str, ...]
    starts_like: Callable[[str], bool]
    record_chars: Callable[[ReadOptions], int]
    records: Callable[[TicketReader], Iterator[_Row | Reject]]


# Tried in order when nothing names the format: CSV, which any text could be, comes last.
INPUT_FORMATS: dict[str, InputFormat] = {
    "jsonl": InputFormat((".jsonl", ".ndjson"), lambda text: text[:1] == "{",
                         lambda options: options.max_text_chars * 4 + 65_536,
                         TicketReader._jsonl_records),
    "csv": InputFormat((".csv",), lambda _text: True, lambda _options: CSV_RECORD_CHARS,
                       TicketReader._csv_records),
}


def input_format_from_name(name: str) -> str | None:
    """The input format a file name says (`.csv`, `.jsonl.gz`, ...), or None."""
    suffix = suffix_of(name)
    return next((fmt for fmt, spec in INPUT_FORMATS.items() if suffix in spec.suffixes), None)


def check_input_format(fmt: str | None) -> None:
    if fmt is not None and fmt not in INPUT_FORMATS:
        raise UsageError(f"unknown input format {fmt!r}",
                         "use --input-format " + " or ".join(sorted(INPUT_FORMATS)))


def format_of(source: Source) -> str:
    """The format the source's name says, else the first whose start its text has."""
    named = None if source.name == STDIN else input_format_from_name(source.name)
    if named is not None:
        return named
    text = source.head.decode(source.bom_encoding or "utf-8", errors="ignore")
    text = text.lstrip("\ufeff \t\r\n")
    return next(fmt for fmt, spec in INPUT_FORMATS.items() if spec.starts_like(text))


def _add(batch: Batch, items: list[Ticket | Reject]) -> None:
    for item in items:
        if isinstance(item, Reject):
            batch.rejects.append(item)
        else:
            batch.tickets.append(item)


def _holds_lone_surrogate(obj: Any) -> bool:
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def _decodes_to_c1(encoding: str) -> bool:
    """Does this codec turn bytes 0x80-0x9f into C1 controls (latin-1 and its kin)?"""
    c1 = bytes(range(0x80, 0xA0))
    return c1.decode(encoding, errors="replace") == c1.decode("latin-1")


class _RecordTooLong(Exception):
    """The current CSV record or JSONL line is longer than the cap; it was not kept."""


class _Lines:
    """The physical lines of a text stream, counted (`number`), each read at most `limit`
    characters at a time: a longer line is drained in small pieces without being kept, and
    it, or a record of several lines (CSV: since `start_record()`) longer than `limit` in
    all, raises _RecordTooLong. `peek(n)` reads lines ahead, which iteration yields first."""

    _DRAIN = 65_536

    def __init__(self, text: io.TextIOBase, limit: int) -> None:
        self._text = text
        self._limit = limit
        self._ahead: deque[str | None] = deque()  # None: an overlong line, already drained
        self._record = 0
        self.number = 0

    def start_record(self) -> None:
        self._record = 0

    def peek(self, chars: int) -> list[str]:
        """The lines ahead, read until they hold `chars` characters, the end, or an overlong
        line."""
        while sum(len(x) for x in self._ahead if x) < chars and (
                not self._ahead or self._ahead[-1]):
            self._ahead.append(self._read())
        return [x for x in self._ahead if x]

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self._ahead.popleft() if self._ahead else self._read()
        if line == "":
            raise StopIteration
        self.number += 1
        if line is None:
            raise _RecordTooLong
        self._record += len(line)
        if self._record > self._limit:
            raise _RecordTooLong
        return line

    def _read(self) -> str | None:
        line = self._text.readline(self._limit)
        if len(line) < self._limit or line.endswith(("\n", "\r")):
            return line
        while True:  # drain the rest of the overlong line without keeping it
            rest = self._text.readline(self._DRAIN)
            if not rest or rest.endswith(("\n", "\r")):
                return None


class _CountedBytes(io.RawIOBase):
    """The bytes under the text decoder, counted with their newlines, so that a decoding
    error can say at which line and byte it is."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self._inner = inner
        self.count = 0
        self.newlines = 0

    def readable(self) -> bool:
        return True

    def read1(self, size: int = -1) -> bytes:
        data: bytes = self._inner.read1(size)
        self.count += len(data)
        self.newlines += data.count(b"\n")
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read1(len(buffer))
        buffer[:len(data)] = data
        return len(data)
