"""The language of each ticket, as an ISO 639-1 code, from CLD2 (the pycld2 wheel carries it).

The only importer of pycld2, imported on first use. Chosen over py3langid and lingua for
speed and for keeping English short tickets English (figures: bench/RESULTS.md, "Language
identification"). CLD2 tells some 160 languages apart; one without an ISO 639-1 code keeps its
ISO 639-2/3 code (`haw`, `ceb`), as BCP 47 does. `UNDETERMINED` ("und", ISO 639-2) means no
verdict: no letters, or too little text for one (`MIN_TEXT_BYTES`). It is not a language the
model lacks: a ticket is in an unseen language only when its code is neither "und" nor one of
the model's `training_languages`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from functools import cache

UNDETERMINED = "und"
# CLD2's bestEffort guess on a couple of words is noise ("ok thx" is Dutch to it). CLD2 counts
# the UTF-8 bytes it scored: letters, one space between words and two more ("ok thx" 8,
# "no signal" 11), so three Chinese characters (11) are enough. The lowest that keeps every
# short English ticket in bench/data/languages.csv English.
MIN_TEXT_BYTES = 10
# Up to this many rows decide the training languages: a strided sample estimates a 1 % share
# within ±0.2 points and keeps `train` on a million rows from paying for every row.
TRAINING_SAMPLE = 20_000

# CLD2 still uses the codes ISO withdrew, and a region or script in some of its codes.
_ISO_639_1 = {"iw": "he", "jw": "jv", "zh-Hant": "zh", "sr-ME": "sr"}
# "un" unknown; "xx-Latn" etc. a script without a language; "xxx", "zz*" CLD2's own pseudo-codes.
_NO_LANGUAGE = re.compile(r"un|xxx|xx-.*|zz.")
# What CLD2 refuses as "invalid UTF-8": C0 controls other than \t \n \f \r, DEL and C1,
# surrogates, and the Unicode noncharacters.
_REFUSED = re.compile(
    "[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef"
    + "".join(f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(17))
    + "]"
)

Detect = Callable[[str], tuple[str, int]]


def detect_languages(texts: Sequence[str], min_text_bytes: int = MIN_TEXT_BYTES) -> list[str]:
    """One code per text, in order: ISO 639-1 (or 639-2/3), or `UNDETERMINED`."""
    detect = _detector()
    languages = []
    for text in texts:
        code, scored_bytes = detect(text)
        if scored_bytes < min_text_bytes or _NO_LANGUAGE.fullmatch(code):
            languages.append(UNDETERMINED)
        else:
            languages.append(_ISO_639_1.get(code, code))
    return languages


def training_languages(texts: Sequence[str], min_share: float = 0.01) -> list[str]:
    """The languages of at least `min_share` of the texts that have one, most common first.

    A language below the share is a few rows the model cannot have learned from (or English
    misread), so tickets in it are still uncertain. Undetermined texts count for nothing.
    """
    step = max(1, len(texts) // TRAINING_SAMPLE)
    counts = Counter(lang for lang in detect_languages(texts[::step]) if lang != UNDETERMINED)
    total = sum(counts.values())
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [lang for lang, n in ranked if n >= min_share * total]


@cache
def _detector() -> Detect:
    import pycld2

    def detect(text: str) -> tuple[str, int]:
        try:
            _reliable, scored_bytes, details = pycld2.detect(
                text, isPlainText=True, bestEffort=True)
        except (pycld2.error, UnicodeEncodeError):  # a character CLD2 refuses; rare
            _reliable, scored_bytes, details = pycld2.detect(
                _REFUSED.sub(" ", text), isPlainText=True, bestEffort=True)
        return details[0][1], scored_bytes

    return detect
