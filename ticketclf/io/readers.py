"""Stream tickets from CSV / JSONL sources in batches; rows that cannot be classified become
rejects with their line number and reason. Memory is bounded by the batch size."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import DataError
from ..schema import Reject, Ticket
from .sources import Source

TEXT_COLUMNS = ("text", "description", "body", "message", "ticket_text", "content")
ID_COLUMNS = ("id", "ticket_id", "ticketid", "ticket_number", "case_id", "case_number", "number")
MAX_FIELD_BYTES = 2 * 1024 * 1024  # a csv field beyond this is a broken quote, not a ticket
EXCERPT_CHARS = 80

csv.field_size_limit(MAX_FIELD_BYTES)


@dataclass(frozen=True)
class ReadOptions:
    text_column: str | None = None
    id_column: str | None = None
    encoding: str = "utf-8-sig"
    batch_size: int = 1000
    max_text_chars: int = 20_000


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


def resolve_columns(columns: Sequence[str], options: ReadOptions, source: str) -> ColumnMap:
    """Pick the text and id columns: the user's choice, else the first known name found."""
    by_lower = {c.lower().strip(): c for c in reversed(columns)}
    if options.text_column:
        if options.text_column not in columns:
            raise DataError(
                f"{source}: no column {options.text_column!r}; columns found: "
                f"{', '.join(columns) or '(none)'}",
                "pass one of them with --text-column",
            )
        text: tuple[str, ...] = (options.text_column,)
    elif "subject" in by_lower and "body" in by_lower:
        text = (by_lower["subject"], by_lower["body"])
    else:
        found = next((by_lower[c] for c in TEXT_COLUMNS if c in by_lower), None)
        if found is None:
            raise DataError(
                f"{source}: no text column found; columns found: {', '.join(columns) or '(none)'}",
                "name the one holding the ticket text with --text-column",
            )
        text = (found,)
    if options.id_column:
        if options.id_column not in columns:
            raise DataError(
                f"{source}: no column {options.id_column!r}; columns found: {', '.join(columns)}",
                "pass one of them with --id-column",
            )
        id_col: str | None = options.id_column
    else:
        id_col = next((by_lower[c] for c in ID_COLUMNS if c in by_lower), None)
    return ColumnMap(text=text, id=id_col)


def _excerpt(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text[:EXCERPT_CHARS]


class TicketReader:
    """Reads one source. `columns` is known after the header (CSV) or first object (JSONL)."""

    def __init__(self, source: Source, options: ReadOptions) -> None:
        self.source = source
        self.options = options
        self.columns: list[str] | None = None
        self.column_map: ColumnMap | None = None
        self._text = io.TextIOWrapper(
            source.stream, encoding=options.encoding, errors="strict", newline=""  # type: ignore[arg-type]
        )

    def batches(self) -> Iterator[Batch]:
        rows = self._csv_rows() if self.source.format == "csv" else self._jsonl_rows()
        batch = Batch()
        try:
            for item in rows:
                if isinstance(item, Reject):
                    batch.rejects.append(item)
                else:
                    batch.tickets.append(item)
                if len(batch) >= self.options.batch_size:
                    yield batch
                    batch = Batch()
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{self.source.name} is not valid {self.options.encoding} text "
                f"(byte {exc.object[exc.start:exc.start + 1]!r})",
                "pass its encoding, e.g. --encoding latin-1 or --encoding cp1252",
            ) from exc
        if len(batch):
            yield batch

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
        id_col = self.column_map.id
        ticket_id = row.get(id_col) if id_col else None
        ident = str(ticket_id) if ticket_id not in (None, "") else f"{name}:{line}"
        return Ticket(source=name, line=line, id=ident, text=text, row=row)

    def _csv_rows(self) -> Iterator[Ticket | Reject]:
        reader = csv.reader(self._text, strict=True)
        name = self.source.name
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{name} is empty", "export the tickets with a header row") from None
        except csv.Error as exc:
            raise DataError(f"{name}: cannot read the header: {exc}") from None
        header = [h.strip() for h in header]
        duplicates = sorted({h for h in header if header.count(h) > 1})
        if duplicates:
            raise DataError(
                f"{name}: column names repeat in the header: {', '.join(duplicates)}",
                "rename them so each column has one name",
            )
        self.columns = header
        self.column_map = resolve_columns(header, self.options, name)
        width = len(header)
        line = reader.line_num + 1  # the physical line where the next record starts
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                reason = f"malformed_csv: {exc} (through line {reader.line_num})"
                yield Reject(name, line, reason, "")
                line = reader.line_num + 1
                continue
            start, line = line, reader.line_num + 1
            if not fields:
                continue  # a blank line holds no ticket
            if len(fields) != width:
                yield Reject(
                    name, start, f"wrong_field_count: expected {width}, got {len(fields)}",
                    _excerpt(",".join(fields)),
                )
                continue
            yield self._ticket(dict(zip(header, fields, strict=True)), start)

    def _jsonl_rows(self) -> Iterator[Ticket | Reject]:
        name = self.source.name
        limit = self.options.max_text_chars * 4 + 65_536  # a line this long cannot be a ticket
        for line_no, line in enumerate(_bounded_lines(self._text, limit), start=1):
            if line is None:
                yield Reject(name, line_no, "line_too_long", "")
                continue
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
            if self.column_map is None:
                self.columns = list(obj)
                self.column_map = resolve_columns(self.columns, self.options, name)
            yield self._ticket(obj, line_no)

    def close(self) -> None:
        self.source.close()


def _bounded_lines(text: io.TextIOBase, limit: int) -> Iterator[str | None]:
    """Lines of at most `limit` characters; a longer line is skipped whole and given as None."""
    while True:
        line = text.readline(limit)
        if not line:
            return
        if len(line) >= limit and not line.endswith("\n"):
            while True:  # drain the rest of the overlong line without keeping it
                rest = text.readline(limit)
                if not rest or rest.endswith("\n"):
                    break
            yield None
            continue
        yield line
