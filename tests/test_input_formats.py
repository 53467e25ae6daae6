"""The input formats are one table (readers.INPUT_FORMATS): its entries are what is read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ticketclf.errors import UsageError
from ticketclf.io.inputs import Inputs
from ticketclf.io.readers import INPUT_FORMATS, InputFormat, ReadOptions, TicketReader, _Row


def one_ticket_per_line(reader: TicketReader) -> Iterator[_Row]:
    reader.columns = ["text"]
    for number, line in enumerate(reader._lines, start=1):
        if line.strip():
            yield _Row({"text": line.rstrip("\n")}, number)


@pytest.fixture
def lines_format(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(INPUT_FORMATS, "lines", InputFormat(
        (".lines",), lambda _text: False, lambda _options: 10_000, one_ticket_per_line))


def read_texts(names: list[str], input_format: str | None = None) -> list[str]:
    with Inputs(names, ReadOptions(), input_format) as inputs:
        return [t.text for batch in inputs.batches() for t in batch.tickets]


def test_a_format_added_to_the_table_is_read_by_its_suffix_gzip_or_not(lines_format, tmp_path):
    import gzip

    plain = tmp_path / "tickets.lines"
    plain.write_text("my bill doubled\n\nwifi down again\n")
    packed = tmp_path / "more.LINES.gz"
    packed.write_bytes(gzip.compress(b"cancel my contract\n"))
    assert read_texts([str(plain), str(packed)]) == [
        "my bill doubled", "wifi down again", "cancel my contract"]


def test_a_format_added_to_the_table_is_read_by_name_when_the_suffix_does_not_tell(
        lines_format, tmp_path: Path):
    path = tmp_path / "export.txt"
    path.write_text("text\nroaming charges\n")
    assert read_texts([str(path)], "lines") == ["text", "roaming charges"]
    assert read_texts([str(path)]) == ["roaming charges"]  # unnamed: CSV, the last resort


def test_an_unknown_input_format_is_a_usage_error_naming_the_known_ones():
    with pytest.raises(UsageError, match="unknown input format 'xml'") as raised:
        Inputs(["-"], ReadOptions(), "xml")
    assert raised.value.hint == "use --input-format csv or jsonl"
