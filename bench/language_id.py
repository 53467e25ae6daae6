"""Which language-identification package should fill the `language` column?

Candidates ship their model inside the wheel: py3langid (naive Bayes over byte n-grams, NumPy),
lingua-language-detector (Rust n-gram models), pycld2 (Google's CLD2, C++). Each runs over the
whole language set it knows and over CANDIDATES, the 26 languages most likely in European,
American and Indian telecom tickets. The chosen one, `ticketclf.model.language`, runs with
several `min_text_bytes` (shorter texts get "und"). Measured on:

- the English corpus `data/telecom/*.csv` (every row English; "short" = at most 8 words) and
  `data/eval/independent.csv` (280 English tickets in other voices): how often an English
  ticket is called something else — each such ticket would be flagged for nothing;
- `bench/data/languages.csv`: 30 hand-written very short English tickets (1-5 words), and 66
  short fr/es/pt/de/it/nl ones (3-15 words, typos, slang); `data/eval/voices.csv` when present
  (pass its path as the first argument; 30 non-English): how often a non-English ticket gets
  its language ("right"), and how often any language but English and "und" ("caught": what
  the pipeline needs to flag it);
- speed on one core (batch API where there is one; best of 3) over 5,000 English corpus rows,
  import time and first-call (model load) time in a fresh interpreter, and installed size.

Prints a Markdown table; about 5 minutes on one core, most of it lingua's.

    .venv/bin/python bench/language_id.py [data/eval/voices.csv]
"""

from __future__ import annotations

import os

# lingua's batch API is multithreaded: measure it on one core like the others
os.environ.setdefault("RAYON_NUM_THREADS", "1")

import glob  # noqa: E402
import importlib.metadata  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ticketclf.model.language import MIN_TEXT_BYTES, detect_languages  # noqa: E402

CANDIDATES = ("en", "fr", "es", "pt", "de", "it", "nl", "pl", "ro", "sv", "da", "no", "fi",
              "cs", "el", "hu", "tr", "ru", "uk", "ar", "hi", "bn", "ta", "te", "ur", "zh")
SHORT_WORDS = 8
SPEED_ROWS = 5_000

Detector = Callable[[Sequence[str]], list[str]]


def py3langid(langs: Sequence[str] | None) -> Detector:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    if langs:
        ident.set_languages(list(langs))
    # "zxx": no linguistic content
    return lambda texts: [
        "und" if (lang := ident.classify(t)[0]) == "zxx" else lang for t in texts]


def lingua(langs: Sequence[str] | None, low_accuracy: bool = False) -> Detector:
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    lingua_code = {"no": "NB"}
    if langs:
        codes = [getattr(IsoCode639_1, lingua_code.get(c, c.upper())) for c in langs]
        builder = LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
    else:
        builder = LanguageDetectorBuilder.from_all_languages()
    if low_accuracy:
        builder = builder.with_low_accuracy_mode()
    detector = builder.with_preloaded_language_models().build()

    def detect(texts: Sequence[str]) -> list[str]:
        found = detector.detect_languages_in_parallel_of(list(texts))
        return ["und" if f is None else f.iso_code_639_1.name.lower() for f in found]

    return detect


def pycld2(langs: Sequence[str] | None) -> Detector:
    import pycld2 as cld2

    allowed = set(langs) if langs else None

    def one(text: str) -> str:
        try:
            _reliable, _bytes, details = cld2.detect(text, isPlainText=True, bestEffort=True)
        except cld2.error:  # invalid UTF-8 (lone surrogates) or control characters
            return "und"
        for _name, code, _percent, _score in details:
            if code != "un" and (allowed is None or code in allowed):
                return code
        return "und"

    return lambda texts: [one(t) for t in texts]


def chosen(min_text_bytes: int) -> Detector:
    return lambda texts: detect_languages(texts, min_text_bytes=min_text_bytes)


CONFIGS: dict[str, tuple[str, str, Callable[[], Detector]]] = {
    # name: (distribution, module to import, factory)
    "py3langid, all 140": ("py3langid", "py3langid", lambda: py3langid(None)),
    "py3langid, candidates": ("py3langid", "py3langid", lambda: py3langid(CANDIDATES)),
    "lingua, all 75": ("lingua-language-detector", "lingua", lambda: lingua(None)),
    "lingua, candidates": ("lingua-language-detector", "lingua", lambda: lingua(CANDIDATES)),
    "lingua low-accuracy, candidates": (
        "lingua-language-detector", "lingua", lambda: lingua(CANDIDATES, low_accuracy=True)),
    "pycld2, all": ("pycld2", "pycld2", lambda: pycld2(None)),
    "pycld2, first candidate of top 3": ("pycld2", "pycld2", lambda: pycld2(CANDIDATES)),
    **{
        f"ticketclf `detect_languages`, min_text_bytes={n}"
        + (" (default)" if n == MIN_TEXT_BYTES else ""):
        # ticketclf.model (scikit-learn) imported beforehand: the module's own cost
        ("pycld2", "ticketclf.model.language", lambda n=n: chosen(n))
        for n in (0, 8, 10, 12)
    },
}


def installed_mb(dist: str) -> float:
    files = importlib.metadata.distribution(dist).files or []
    return sum(f.locate().stat().st_size for f in files if f.locate().exists()) / 1e6


def fresh_interpreter_seconds(module: str, factory_expr: str) -> tuple[float, float]:
    """Import time and first-detection time (model load) in a new process."""
    package = "import ticketclf.model; " if module.startswith("ticketclf.") else ""
    code = (
        f"import time, sys; sys.path.insert(0, 'bench'); {package}t0 = time.perf_counter(); "
        f"import {module}; t1 = time.perf_counter(); "
        "import language_id as b; t2 = time.perf_counter(); "
        f"b.CONFIGS[{factory_expr!r}][2]()(['my bill is wrong']); "
        "print(t1 - t0, time.perf_counter() - t2)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def speed(detect: Callable[[list[str]], object], texts: list[str]) -> float:
    t0 = time.perf_counter()
    detect(texts)
    return len(texts) / (time.perf_counter() - t0)


def other_language(found: Sequence[str]) -> float:
    """Share of texts given a language other than English ("und" is none): an English one
    would be flagged for nothing, a non-English one is caught."""
    return sum(f not in ("en", "und") for f in found) / len(found)


def right(found: Sequence[str], truth: Sequence[str]) -> float:
    return sum(f == t for f, t in zip(found, truth, strict=True)) / len(truth)


def main() -> None:
    files = sorted(glob.glob(str(ROOT / "data/telecom/*.csv")))
    corpus = pd.concat([pd.read_csv(f) for f in files])
    english = corpus.text.astype(str).tolist()
    short = [t for t in english if len(t.split()) <= SHORT_WORDS]
    independent = pd.read_csv(ROOT / "data/eval/independent.csv").text.astype(str).tolist()
    written = pd.read_csv(ROOT / "bench/data/languages.csv")
    written_en = written[written.language == "en"].text.tolist()
    foreign = written[written.language != "en"]
    voices_path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "data/eval/voices.csv"
    voices = pd.read_csv(voices_path) if voices_path.exists() else None
    speed_texts = (english * (SPEED_ROWS // len(english) + 1))[:SPEED_ROWS]

    print(f"English: corpus {len(english)} rows ({len(short)} of at most {SHORT_WORDS} words), "
          f"independent {len(independent)}, hand-written short {len(written_en)}. "
          f"Non-English: hand-written {len(foreign)}"
          + (f", voices.csv {sum(voices.language != 'en')} (and {sum(voices.language == 'en')} "
             "English)" if voices is not None else ", voices.csv absent") + ".\n")
    columns = ["detector", "corpus → other", "corpus short → other", "independent → other",
               "hand-written English → other", "hand-written English → und",
               "hand-written foreign: right", "hand-written foreign: caught"]
    if voices is not None:
        columns += ["voices English → other", "voices foreign: right", "voices foreign: caught"]
    columns += ["texts/s, 1 core", "import s", "first call s", "installed MB"]
    print("| " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * (len(columns) - 1))
    for name, (dist, module, factory) in CONFIGS.items():
        detect = factory()
        found_en = detect(written_en)
        found = detect(foreign.text.tolist())
        cells = [other_language(detect(english)), other_language(detect(short)),
                 other_language(detect(independent)), other_language(found_en),
                 sum(f == "und" for f in found_en) / len(found_en),
                 right(found, foreign.language.tolist()), other_language(found)]
        if voices is not None:
            v_en = voices[voices.language == "en"].text.astype(str).tolist()
            v_foreign = voices[voices.language != "en"]
            found = detect(v_foreign.text.astype(str).tolist())
            cells += [other_language(detect(v_en)), right(found, v_foreign.language.tolist()),
                      other_language(found)]
        rate = max(speed(detect, speed_texts) for _ in range(3))  # the machine is shared
        imp, first = fresh_interpreter_seconds(module, name)
        row = [name] + [f"{c:.1%}" for c in cells]
        row += [f"{rate:,.0f}", f"{imp:.2f}", f"{first:.2f}", f"{installed_mb(dist):.1f}"]
        print("| " + " | ".join(row) + " |", flush=True)
    print(f"\n`detect_languages` vs a word 1-2 TF-IDF transform (the issue's 37.7k rows/s "
          f"reference) on the same {len(speed_texts):,} rows, same process, best of 3: "
          f"{against_tfidf(english, speed_texts)}")


def against_tfidf(corpus: list[str], texts: list[str]) -> str:
    """A ratio the machine's load changes much less than either speed."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(corpus)
    rates = {"detect_languages": 0.0, "TF-IDF": 0.0}
    for _ in range(3):
        rates["detect_languages"] = max(rates["detect_languages"], speed(detect_languages, texts))
        rates["TF-IDF"] = max(rates["TF-IDF"], speed(vectorizer.transform, texts))
    return (f"{rates['detect_languages']:,.0f} vs {rates['TF-IDF']:,.0f} rows/s, "
            f"**{rates['detect_languages'] / rates['TF-IDF']:.1f}×**")


if __name__ == "__main__":
    main()
