"""Labelled tickets for train and evaluate, read through the one reader: labels are columns
like any other, so these commands take every format, encoding, stdin and text-column
detection that classify takes, and count their rejects the same way."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import DataError
from .inputs import Inputs
from .readers import ReadOptions


@dataclass
class LabelledTickets:
    """Texts and, per head, each row's label ("" where the row has none)."""

    texts: list[str] = field(default_factory=list)
    labels: dict[str, list[str]] = field(default_factory=dict)
    rows_by_source: dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    reject_reasons: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)


def label_of(value: Any) -> str:
    """A label cell as a label: "" for none."""
    return "" if value is None else str(value).strip()


def read_labelled(inputs: Sequence[str], options: ReadOptions,
                  label_columns: Mapping[str, str],
                  input_format: str | None = None) -> LabelledTickets:
    """Every accepted row's text and labels; `label_columns` maps each head to its column.
    Heads whose column no input has are left out; none at all is a DataError."""
    data = LabelledTickets(labels={head: [] for head in label_columns})
    seen_columns: set[str] = set()
    with Inputs(inputs, options, input_format) as stream:
        for batch in stream.batches():
            for reject in batch.rejects:
                data.rejected += 1
                reason = reject.reason.split(":", 1)[0]
                data.reject_reasons[reason] = data.reject_reasons.get(reason, 0) + 1
            for ticket in batch.tickets:
                data.texts.append(ticket.text)
                seen_columns.update(ticket.row)
                data.rows_by_source[ticket.source] = data.rows_by_source.get(ticket.source, 0) + 1
                for head, column in label_columns.items():
                    data.labels[head].append(label_of(ticket.row.get(column)))
    data.labels = {h: v for h, v in data.labels.items()
                   if label_columns[h] in seen_columns and any(v)}
    if not data.labels:
        raise DataError(
            f"{', '.join(inputs)}: no label columns ({', '.join(label_columns.values())})",
            "name them with --category-column / --sentiment-column")
    return data
