"""Several input files read as one stream of batches: the one open → read → close loop that
classify, compare, train and evaluate share."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack

from ..errors import DataError, UsageError
from .readers import Batch, ReadOptions, TicketReader, check_input_format
from .sources import STDIN, Source, open_source


class Inputs:
    """All inputs as one stream of batches. With `same_columns` (classify: one output
    header), every CSV must share the first one's columns. Use as a context manager: the
    sources are opened on entry and closed on exit."""

    def __init__(self, names: Sequence[str], options: ReadOptions,
                 input_format: str | None = None, same_columns: bool = False) -> None:
        if list(names).count(STDIN) > 1:
            raise UsageError("stdin ('-') can be read only once")
        check_input_format(input_format)
        self.names = list(names)
        self.options = options
        self.input_format = input_format
        self.same_columns = same_columns
        self.sources: list[Source] = []
        self.columns: list[str] | None = None
        self._stack = ExitStack()

    def __enter__(self) -> Inputs:
        try:
            for name in self.names:
                source = open_source(name)
                self._stack.callback(source.close)
                self.sources.append(source)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    @property
    def bytes_read(self) -> int:
        return sum(s.counter.bytes_read for s in self.sources)

    @property
    def total_bytes(self) -> int | None:
        sizes = [s.total_bytes for s in self.sources]
        return None if None in sizes else sum(s for s in sizes if s is not None)

    def batches(self) -> Iterator[Batch]:
        for source in self.sources:
            reader = TicketReader(source, self.options, self.input_format)
            try:
                for batch in reader.batches():
                    self._check_columns(reader)
                    yield batch
                self._check_columns(reader)
            finally:
                reader.close()

    def _check_columns(self, reader: TicketReader) -> None:
        if reader.columns is None:
            return
        if self.columns is None:
            self.columns = reader.columns
        elif (self.same_columns and reader.columns != self.columns
              and reader.format == "csv"):
            raise DataError(
                f"{reader.source.name} has other columns than {self.sources[0].name}",
                "classify files with different layouts in separate runs",
            )
