"""Priority from a ticket's labels and urgency cues in its text: a rule table, first match wins.

The table is data, the `[priority]` section of a taxonomy file (ticketclf/taxonomies/telecom.toml
holds the built-in one, documented there and in the README). `PriorityRules` checks a section,
compiles its cues once, and then costs per ticket what the hand-written table did: one
lower-casing of the text and a few set lookups and regex searches.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .schema import PRIORITIES as DEFAULT_LEVELS


class InvalidTaxonomy(ValueError):
    """A taxonomy (or its priority section) that cannot be used; the message says why in one
    line, and the caller names the file."""


@dataclass(frozen=True)
class Rule:
    """Holds when the text has the cue (if any) and each named head's label is in its set."""

    priority: str
    cue: str | None = None
    labels: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"priority": self.priority, **({"cue": self.cue} if self.cue else {}),
                **{head: sorted(labels) for head, labels in self.labels.items()}}


@dataclass(frozen=True)
class PriorityRules:
    """The levels (lowest first), the cues by name (a regular expression, or a tuple of words
    and phrases matched whole), the rules in order, and the level when none matches."""

    levels: tuple[str, ...] = DEFAULT_LEVELS
    default: str = DEFAULT_LEVELS[0]
    cues: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    _compiled: tuple[tuple[str, re.Pattern[str] | None,
                           tuple[tuple[str, frozenset[str]], ...]], ...] = field(
        init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.levels or len(set(self.levels)) != len(self.levels):
            raise InvalidTaxonomy("priority levels must be a non-empty list without repeats")
        for level in (self.default, *(r.priority for r in self.rules)):
            if level not in self.levels:
                raise InvalidTaxonomy(f"priority {level!r} is not one of the levels "
                                      f"{', '.join(self.levels)}")
        patterns = {name: _compile(name, cue) for name, cue in self.cues.items()}
        compiled = []
        for n, rule in enumerate(self.rules, start=1):
            if rule.cue is not None and rule.cue not in patterns:
                raise InvalidTaxonomy(f"priority rule {n} names the cue {rule.cue!r}, which "
                                      "[priority.cues] lacks")
            if rule.cue is None and not rule.labels:
                raise InvalidTaxonomy(f"priority rule {n} has no condition (a cue or labels); "
                                      "for the level when no rule matches, set default")
            compiled.append((rule.priority, patterns[rule.cue] if rule.cue else None,
                             tuple(rule.labels.items())))
        object.__setattr__(self, "_compiled", tuple(compiled))

    def priority(self, labels: Mapping[str, str], text: str) -> str:
        """The first matching rule's level for a ticket's labels (head -> label) and text."""
        lowered: str | None = None
        for level, pattern, conditions in self._compiled:
            for head, allowed in conditions:
                if labels.get(head) not in allowed:
                    break
            else:
                if pattern is None:
                    return level
                # The cues are lower case: lowering the text once is twice as fast as IGNORECASE.
                if lowered is None:
                    lowered = text.lower()
                if pattern.search(lowered) is not None:
                    return level
        return self.default

    def check_labels(self, heads: Mapping[str, Collection[str]]) -> None:
        """Every head and label a rule names must be in the taxonomy's heads."""
        for n, rule in enumerate(self.rules, start=1):
            for head, labels in rule.labels.items():
                if head not in heads:
                    raise InvalidTaxonomy(f"priority rule {n} has a condition on {head!r}, "
                                          f"which is not a head ({', '.join(heads)})")
                missing = sorted(labels - set(heads[head]))
                if missing:
                    raise InvalidTaxonomy(f"priority rule {n} names {head} label(s) "
                                          f"{', '.join(missing)}, which [{head}] lacks")

    def restricted_to(self, heads: Mapping[str, Collection[str]]) -> PriorityRules:
        """These rules for a taxonomy with only these labels: conditions keep the labels it
        has, and a rule left with a condition no label can meet is dropped. Same priorities
        for every ticket such a model can label."""
        kept = []
        for rule in self.rules:
            labels = {h: allowed & set(heads.get(h, ())) for h, allowed in rule.labels.items()}
            if all(labels.values()):
                kept.append(Rule(rule.priority, rule.cue, labels))
        return PriorityRules(self.levels, self.default, self.cues, tuple(kept))

    def as_dict(self) -> dict[str, Any]:
        return {"levels": list(self.levels), "default": self.default,
                "cues": {name: cue if isinstance(cue, str) else list(cue)
                         for name, cue in self.cues.items()},
                "rules": [rule.as_dict() for rule in self.rules]}

    @classmethod
    def from_dict(cls, data: Any) -> PriorityRules:
        """A `[priority]` section as read from TOML (or a card); raises InvalidTaxonomy."""
        if not isinstance(data, dict):
            raise InvalidTaxonomy("[priority] must be a table")
        check_keys("[priority]", data, {"levels", "default", "cues", "rules"})
        levels = tuple(_strings("priority levels", data.get("levels", list(DEFAULT_LEVELS))))
        cues = data.get("cues", {})
        if not isinstance(cues, dict):
            raise InvalidTaxonomy("[priority.cues] must be a table of name = regex or words")
        rules = data.get("rules", [])
        if not isinstance(rules, list):
            raise InvalidTaxonomy("priority rules must be an array of tables ([[priority.rules]])")
        default = data.get("default", levels[0] if levels else "")
        if not isinstance(default, str):
            raise InvalidTaxonomy("priority default must be a string")
        return cls(levels, default,
                   {str(name): cue if isinstance(cue, str) else tuple(
                       _strings(f"priority cue {name!r}", cue)) for name, cue in cues.items()},
                   tuple(_rule(n, r) for n, r in enumerate(rules, start=1)))


def _rule(n: int, data: Any) -> Rule:
    if not isinstance(data, dict):
        raise InvalidTaxonomy(f"priority rule {n} must be a table")
    priority, cue = data.get("priority"), data.get("cue")
    if not isinstance(priority, str):
        raise InvalidTaxonomy(f"priority rule {n} needs priority = \"<level>\"")
    if cue is not None and not isinstance(cue, str):
        raise InvalidTaxonomy(f"priority rule {n}: cue must be the name of one cue")
    labels = {head: frozenset(_strings(f"priority rule {n}: {head}",
                                       [value] if isinstance(value, str) else value))
              for head, value in data.items() if head not in ("priority", "cue")}
    return Rule(priority, cue, labels)


def _compile(name: str, cue: str | tuple[str, ...]) -> re.Pattern[str]:
    """A regex as written, or whole words and phrases (escaped, so no character is special)."""
    if isinstance(cue, str):
        if any(c.isupper() for c in re.sub(r"\\.", "", cue)):  # escapes such as \B are fine
            raise InvalidTaxonomy(f"priority cue {name!r} has upper-case letters, but cues are "
                                  "matched against the lower-cased text: write it in lower case")
        pattern = cue
    elif cue:
        pattern = r"\b(?:" + "|".join(re.escape(w.lower()) for w in cue) + r")\b"
    else:
        raise InvalidTaxonomy(f"priority cue {name!r} has no words")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise InvalidTaxonomy(f"priority cue {name!r} is not a valid regular expression: "
                              f"{exc}") from None


def _strings(what: str, value: Any) -> Sequence[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidTaxonomy(f"{what} must be a list of non-empty strings")
    return value


def check_keys(where: str, data: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InvalidTaxonomy(f"{where} has unknown key(s) {', '.join(unknown)} "
                              f"(allowed: {', '.join(sorted(allowed))})")
