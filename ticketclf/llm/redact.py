"""PII redaction: the only form of a ticket that leaves the machine, is hashed for the cache
key or appears (as a hash) in logs.

Emails, phone numbers, card numbers (Luhn-checked), IBANs, account and reference numbers,
street addresses and postcodes become typed placeholders such as `[PHONE]`. The patterns
are anchored on shapes that amounts, dates, times, speeds and data sizes do not have, so
"£45.99 on 3 November", "12/03/2024", "14:30" and "100 Mbps" survive. Names are not
redacted: they cannot be told from words reliably, and the category rarely depends on them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

EMAIL = "[EMAIL]"
CARD = "[CARD]"
IBAN = "[IBAN]"
PHONE = "[PHONE]"
ACCOUNT = "[ACCOUNT]"
REFERENCE = "[REFERENCE]"
ADDRESS = "[ADDRESS]"
POSTCODE = "[POSTCODE]"
NUMBER = "[NUMBER]"


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _card(match: re.Match[str]) -> str:
    # 13–19 digits failing Luhn are no card, but no amount or date either: some identifier.
    return CARD if _luhn_ok(_digits(match.group())) else NUMBER


def _phone(match: re.Match[str]) -> str | None:
    # A phone number has 9–15 digits (E.164 allows 15); fewer is a date, an amount or a code.
    return PHONE if 9 <= len(_digits(match.group())) <= 15 else None


_YEAR_OR_DATE = re.compile(r"(?:19|20)\d\d(?:[-/.]\d{1,2}){0,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")
_ACCOUNT_WORDS = {"account", "acct", "acc", "customer", "contract", "subscriber", "membership"}


def _identifier(match: re.Match[str]) -> str | None:
    """`account no. 12345678`, `ref: AB-1234`: the keyword stays (it says what the ticket is
    about), the identifier goes, unless it is a year or a date."""
    ident = match.group("id")
    if len(_digits(ident)) < 3 or _YEAR_OR_DATE.fullmatch(ident):
        return None
    keyword = match.group("kw").lower()
    label = ACCOUNT if keyword in _ACCOUNT_WORDS else REFERENCE
    return match.group()[: match.start("id") - match.start()] + label


def _coded_id(match: re.Match[str]) -> str:
    return ACCOUNT if match.group("prefix").upper() in {"ACC", "ACCT", "AC", "CUST"} else REFERENCE


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern[str]
    # Returns the replacement, or None to leave the match as it is.
    replace: Callable[[re.Match[str]], str | None]

    def apply(self, text: str) -> str:
        return self.pattern.sub(lambda m: self.replace(m) or m.group(), text)


def _fixed(label: str) -> Callable[[re.Match[str]], str | None]:
    return lambda _match: label


_SEP = r"[ .\-]?"
_STREET_TYPES = (
    "Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Dr|Close|Court|Ct|Way|Place|Pl|Boulevard|"
    "Blvd|Crescent|Cres|Terrace|Gardens|Gdns|Square|Sq|Hill|Grove|Parade|Row|Walk|Mews|"
    "Park|Green|Rise|View|Highway|Hwy"
)

# Order matters: the most specific shapes first, so a card is not taken for a phone number
# and an IBAN's digits are not taken for a card.
_RULES: tuple[_Rule, ...] = (
    _Rule(re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"),
          _fixed(EMAIL)),
    # Country code, check digits, then the account in groups of four (spaces optional).
    _Rule(re.compile(r"\b[A-Z]{2}\d{2}(?:[ \-]?[A-Z0-9]{4}){2,7}(?:[ \-]?[A-Z0-9]{1,3})?\b"),
          _fixed(IBAN)),
    _Rule(re.compile(r"(?<![\d.,£$€])\b\d(?:[ \-]?\d){12,18}\b(?![.,]\d)"), _card),
    # International: +CC then groups, an optional (0) trunk prefix.
    _Rule(re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .\-]?\(0\))?(?:[ .\-]?\(?\d{1,5}\)?){1,6}(?!\d)"),
          _phone),
    # US: (555) 010-4477, 555-010-4477, 555.010.4477, 555 010 4477.
    _Rule(re.compile(r"(?:\(\d{3}\)\s?|(?<![\d.,£$€])\b\d{3}[ .\-])\d{3}[ .\-]\d{4}\b(?![.,]\d)"),
          _phone),
    # National numbers with a trunk 0: UK 07700 900123, 020 7946 0958, 0117 496 0123;
    # FR 01 23 45 67 89; DE 030 1234567.
    _Rule(re.compile(rf"(?<![\d.,£$€/])\b0\d{{1,4}}(?:{_SEP}\d{{2,8}}){{1,4}}\b(?![.,/]\d)"),
          _phone),
    # Keyword, optional "no./number/id/#", optional "is/:", then the identifier.
    _Rule(re.compile(
        r"\b(?P<kw>account|acct|acc|customer|contract|subscriber|membership|reference|ref|"
        r"order|case|ticket|invoice|booking|policy|serial|imei|crime reference|pac|stac)"
        r"(?:\s*(?:no\.?|number|num|id|code|#))?\s*(?:is|was|:|#)?\s*"
        r"(?P<id>[A-Z0-9][A-Z0-9\-/]{3,}[A-Z0-9])\b", re.IGNORECASE),
        _identifier),
    # Coded identifiers without a keyword: ACC-40012345, INV2024001, T-100001.
    _Rule(re.compile(r"\b(?P<prefix>[A-Z]{1,5})-?\d{5,}\b"), _coded_id),
    _Rule(re.compile(
        rf"\b(?:(?:Flat|Apartment|Apt|Unit)\s+\d+[A-Za-z]?,?\s+)?\d{{1,5}}[A-Za-z]?,?\s+"
        rf"(?:[A-Z][\w'\-]*\s+){{1,3}}(?:{_STREET_TYPES})\b\.?"), _fixed(ADDRESS)),
    _Rule(re.compile(r"\b[A-Z][a-zäöüß]+(?:straße|strasse|weg|platz|allee|gasse)\s+\d+[a-z]?\b"),
          _fixed(ADDRESS)),
    _Rule(re.compile(r"\b\d{1,4},?\s+(?:rue|avenue|boulevard|chemin|allée|calle|via)\s+"
                     r"(?:(?:de|du|des|la|le|l'|del|della)\s*){0,2}(?-i:[A-ZÀ-Ý])[\w'\-]*",
                     re.IGNORECASE),
          _fixed(ADDRESS)),
    # UK postcode (full form; an outward code alone, "SW1", is an area and stays).
    _Rule(re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]? ?(?!\d[GMKT]B\b)\d[A-Z]{2}\b"), _fixed(POSTCODE)),
    # Whatever long digit run is left is an identifier of some kind.
    _Rule(re.compile(r"(?<![\d.,£$€])\b\d{7,}\b(?![.,]\d)"), _fixed(NUMBER)),
)


def redact(text: str) -> str:
    """The text with personal data replaced by typed placeholders."""
    for rule in _RULES:
        text = rule.apply(text)
    return text
