"""The language column's detector: real CLD2 on real tickets."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from ticketclf.model.language import UNDETERMINED, detect_languages, training_languages

from .conftest import CORPUS

TICKETS = {
    "en": "I was charged twice for my broadband this month, please refund one of them",
    "fr": "bonjour, ma facture est beaucoup trop élevée ce mois ci, je veux un remboursement",
    "es": "hola, me cobraron dos veces la misma factura este mes, q pasa??",
    "de": "meine Rechnung ist diesen Monat viel zu hoch, bitte um Erstattung",
}


def test_tickets_get_their_languages_in_input_order() -> None:
    assert detect_languages(list(TICKETS.values())) == list(TICKETS)


def test_short_english_tickets_of_the_corpus_are_never_another_language() -> None:
    texts = pd.concat(pd.read_csv(f) for f in sorted(CORPUS.glob("*.csv"))).text.astype(str)
    short = [t for t in texts if len(t.split()) <= 8]
    assert len(short) > 100
    found = detect_languages(short)
    assert set(found) <= {"en", UNDETERMINED}
    assert found.count("en") > 0.9 * len(short)


@pytest.mark.parametrize("text", ["refund pls", "internet down", "cancel my contract"])
def test_a_few_english_words_stay_english(text: str) -> None:
    assert detect_languages([text]) == ["en"]


def test_two_words_are_too_few_to_tell() -> None:
    # CLD2 alone calls this Dutch
    assert detect_languages(["ok thx 👍"]) == [UNDETERMINED]


@pytest.mark.parametrize("text", ["", "   ", "😡😡😡", "12345 #4452", "?!", "€€€"])
def test_text_without_words_is_undetermined(text: str) -> None:
    assert detect_languages([text]) == [UNDETERMINED]


def test_characters_cld2_refuses_are_read_around() -> None:
    ticket = "I was charged twice for my broadband{} this month, please refund one"
    refused = ["\x00", "\x0b", "\x85", "\ud800", "\ufffe", "\U0010ffff"]
    assert detect_languages([ticket.format(c) for c in refused]) == ["en"] * len(refused)


def test_codes_are_iso_639_1_where_cld2_has_older_ones() -> None:
    hebrew = "החשבון שלי גבוה מדי החודש ואני רוצה לבטל את המנוי"  # CLD2: "iw"
    traditional_chinese = "我的帳單這個月太高了，請幫我退款"  # CLD2: "zh-Hant"
    assert detect_languages([hebrew, traditional_chinese]) == ["he", "zh"]


def test_training_languages_keep_a_share_the_model_can_learn_from() -> None:
    english = [TICKETS["en"]] * 95
    assert training_languages(english + [TICKETS["fr"]] * 5) == ["en", "fr"]


def test_training_languages_leave_out_a_stray_row_and_undetermined_ones() -> None:
    texts = [TICKETS["en"]] * 200 + [TICKETS["de"]] + ["👍"] * 50
    assert training_languages(texts) == ["en"]


def test_training_languages_of_a_large_set_sample_all_of_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ticketclf.model.language.TRAINING_SAMPLE", 10)
    texts = [TICKETS["en"]] * 50 + [TICKETS["es"]] * 50  # the first 10 rows are all English
    assert training_languages(texts) == ["en", "es"]


def test_the_detector_is_imported_on_first_use_only() -> None:
    code = (
        "import sys\n"
        "from ticketclf.model.language import detect_languages\n"
        "assert 'pycld2' not in sys.modules\n"
        f"assert detect_languages([{TICKETS['en']!r}]) == ['en']\n"
        "assert 'pycld2' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
