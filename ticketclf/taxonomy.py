"""A model's labels and what each one means, with its priority rules: the taxonomy.

The LLM prompt, its answer schema, the validation of answers, the priority column and the
metric labels all come from the model's taxonomy, so a model trained on its own labels gets
answers in those labels only. A taxonomy is a TOML file (the format: README, "Your own
labels"; the built-in telecom one, ticketclf/taxonomies/telecom.toml, is the default and the
template); the model card carries it as `taxonomy: {hash, definition}`.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .priority import InvalidTaxonomy, PriorityRules, check_keys
from .schema import HEADS

UNKNOWN_CATEGORY = "UNKNOWN"  # the LLM's way to say no category fits: no taxonomy may use it
GENERIC_BUSINESS = "a company"  # "You classify customer-support tickets for a company."
MAX_LABEL_CHARS = 64
# A label starts with a letter or digit (so no CSV cell of it reads as a formula) and has no
# control characters (it is a CSV cell, a metric label value and a line of the prompt).
_LABEL = re.compile(r"[^\W_][^\x00-\x1f\x7f]*")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Taxonomy:
    """Per head, its labels in order, each with a description; the business they serve; and
    the priority rules. Constructing one checks it (raises InvalidTaxonomy)."""

    heads: Mapping[str, Mapping[str, str]]
    business: str = GENERIC_BUSINESS
    priority: PriorityRules = field(default_factory=PriorityRules)
    source: str = field(default="", compare=False)  # where it came from, for messages

    def __post_init__(self) -> None:
        for head in HEADS:
            if head not in self.heads:
                raise InvalidTaxonomy(f"no [{head}] table: a taxonomy has one per head "
                                      f"({', '.join(HEADS)})")
        for head, labels in self.heads.items():
            _check_head(head, labels)
        if not isinstance(self.business, str) or not self.business.strip():
            raise InvalidTaxonomy("business must be a non-empty string")
        self.priority.check_labels(self.heads)

    def labels(self, head: str) -> tuple[str, ...]:
        return tuple(self.heads.get(head, {}))

    def as_dict(self) -> dict[str, Any]:
        """The TOML file's structure, as plain data (for the model card)."""
        return {"business": self.business,
                **{head: dict(labels) for head, labels in self.heads.items()},
                "priority": self.priority.as_dict()}

    @property
    def hash(self) -> str:
        """Changes whenever a label, a description, the business or a priority rule changes."""
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()
                              ).hexdigest()[:16]

    def card_entry(self) -> dict[str, Any]:
        return {"hash": self.hash, "definition": self.as_dict()}

    @classmethod
    def from_dict(cls, data: Any, source: str) -> Taxonomy:
        """A taxonomy from the TOML structure; ConfigError (exit 78) naming `source`."""
        try:
            if not isinstance(data, dict):
                raise InvalidTaxonomy("not a table")
            check_keys("the file", data, {"business", "priority", *HEADS})
            heads = {}
            for head in (h for h in HEADS if h in data):
                table = data[head]
                if not isinstance(table, dict):
                    raise InvalidTaxonomy(f"[{head}] must be a table of label = description")
                heads[head] = {label: _one_line(f"the description of {label!r} in [{head}]",
                                                text) for label, text in table.items()}
            business = _one_line("business", data.get("business", GENERIC_BUSINESS))
            priority = PriorityRules.from_dict(data["priority"]) if "priority" in data \
                else PriorityRules()
            return cls(heads, business, priority, source)
        except InvalidTaxonomy as exc:
            raise ConfigError(f"taxonomy {source}: {exc}") from None

    @classmethod
    def load(cls, path: Path) -> Taxonomy:
        """Read and check a taxonomy file; ConfigError (exit 78) naming the file and why."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"taxonomy {path}: cannot be read: {exc.strerror}",
                              "pass --taxonomy a TOML file (template: ticketclf taxonomy "
                              "show --toml)") from None
        except UnicodeDecodeError:
            raise ConfigError(f"taxonomy {path}: not UTF-8 text") from None
        return cls.parse(text, str(path))

    @classmethod
    def parse(cls, text: str, source: str) -> Taxonomy:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"taxonomy {source}: not valid TOML: {exc}") from None
        return cls.from_dict(data, source)

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> Taxonomy:
        """The taxonomy a model card carries; the default for a card without one (models
        trained before cards carried it use the built-in labels)."""
        entry = card.get("taxonomy")
        if entry is None:
            return DEFAULT_TAXONOMY
        if not isinstance(entry, dict) or "definition" not in entry:
            raise ConfigError("the model card's taxonomy has no definition",
                              "retrain the model or restore its card")
        taxonomy = cls.from_dict(entry["definition"], "in the model card")
        if entry.get("hash") != taxonomy.hash:
            raise ConfigError("the model card's taxonomy does not match its hash",
                              "the card was edited; retrain the model or restore its card")
        return taxonomy

    @classmethod
    def from_labels(cls, labels: Mapping[str, Collection[str]]) -> Taxonomy:
        """For training on any labels (--any-labels): the labels seen, each with its built-in
        description if it is a built-in label and none otherwise; heads without labels keep
        the built-in ones; the built-in priority rules, kept where they name these labels."""
        heads = {head: {label: DEFAULT_TAXONOMY.heads[head].get(label, "")
                        for label in sorted(labels[head])} if labels.get(head)
                 else dict(DEFAULT_TAXONOMY.heads[head]) for head in HEADS}
        return cls(heads, DEFAULT_TAXONOMY.business,
                   DEFAULT_TAXONOMY.priority.restricted_to(heads), "of the training labels")

    def to_toml(self) -> str:
        """The taxonomy as a file that `Taxonomy.load` reads back equal."""
        lines = [f"business = {_toml_string(self.business)}"]
        for head, labels in self.heads.items():
            lines += ["", f"[{head}]"]
            lines += [f"{_toml_key(label)} = {_toml_string(text)}"
                      for label, text in labels.items()]
        p = self.priority
        lines += ["", "[priority]", f"levels = {_toml_list(p.levels)}",
                  f"default = {_toml_string(p.default)}"]
        if p.cues:
            lines += ["", "[priority.cues]"]
            lines += [f"{_toml_key(name)} = "
                      f"{_toml_string(cue) if isinstance(cue, str) else _toml_list(cue)}"
                      for name, cue in p.cues.items()]
        for rule in p.rules:
            lines += ["", "[[priority.rules]]"]
            lines += [f"{_toml_key(key)} = "
                      f"{_toml_string(value) if isinstance(value, str) else _toml_list(value)}"
                      for key, value in rule.as_dict().items()]
        return "\n".join(lines) + "\n"

    def describe(self) -> str:
        """For people: the labels with their descriptions and the priority rules in order."""
        out = [f"taxonomy {self.hash}" + (f" ({self.source})" if self.source else ""),
               f"business: {self.business}"]
        for head, labels in self.heads.items():
            width = max(map(len, labels))
            out += ["", f"{head}:"]
            out += [f"  {label:<{width}}  {text}".rstrip() for label, text in labels.items()]
        p = self.priority
        out += ["", f"priority (levels {' < '.join(p.levels)}; first match wins):"]
        for n, rule in enumerate(p.rules, start=1):
            conditions = [f"the text has the cue {rule.cue!r}"] if rule.cue else []
            conditions += [f"{head} is {' or '.join(sorted(labels))}"
                           for head, labels in rule.labels.items()]
            out.append(f"  {n}. {rule.priority} when {' and '.join(conditions)}")
        out.append(f"  otherwise {p.default}")
        for name, cue in p.cues.items():
            out.append(f"  cue {name!r}: " + (f"regex {cue}" if isinstance(cue, str)
                                              else f"words {', '.join(cue)}"))
        return "\n".join(out)


def _check_head(head: str, labels: Mapping[str, str]) -> None:
    if len(labels) < 2:
        raise InvalidTaxonomy(f"[{head}] needs at least two labels, has {len(labels)}")
    seen: dict[str, str] = {}
    for label in labels:
        if len(label) > MAX_LABEL_CHARS or not _LABEL.fullmatch(label) \
                or label != label.strip():
            raise InvalidTaxonomy(
                f"label {label!r} in [{head}]: a label starts with a letter or digit, has no "
                f"control characters or surrounding spaces, and at most {MAX_LABEL_CHARS} "
                "characters")
        if head == "category" and label.upper() == UNKNOWN_CATEGORY:
            raise InvalidTaxonomy(f"label {label!r} in [category]: {UNKNOWN_CATEGORY} is the "
                                  "LLM's answer when no category fits; name the label otherwise")
        # The LLM's answers and people's spreadsheets do not keep case reliably.
        twin = seen.setdefault(label.casefold(), label)
        if twin != label:
            raise InvalidTaxonomy(f"duplicate label in [{head}]: {twin!r} and {label!r} differ "
                                  "only in case")


def _one_line(what: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidTaxonomy(f"{what} must be a string")
    return " ".join(value.split())  # it becomes one line of the prompt


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_string(text: str) -> str:
    """A literal string where that is possible and clearer (regexes keep their backslashes),
    else a basic string (JSON's escapes are TOML's, bar DEL)."""
    if re.search(r"[\x00-\x1f\x7f]", text) is None and "\\" in text:
        if "'" not in text:
            return f"'{text}'"
        if "'''" not in text and not text.endswith("'"):
            return f"'''{text}'''"
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_list(values: Collection[str]) -> str:
    return "[" + ", ".join(map(_toml_string, values)) + "]"


BUILTIN = resources.files(__package__) / "taxonomies" / "telecom.toml"
DEFAULT_TAXONOMY = Taxonomy.parse(BUILTIN.read_text(encoding="utf-8"), "built-in telecom.toml")
