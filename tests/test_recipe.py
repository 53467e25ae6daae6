"""The default recipe's parts: the static token embedding and how thresholds are chosen."""

from __future__ import annotations

import numpy as np
import pytest

from ticketclf.model.static import StaticEmbedding, analyzer


@pytest.fixture(scope="module")
def static() -> StaticEmbedding:
    return StaticEmbedding().fit(["unused: the table is distilled beforehand"])


def test_static_embedding_knows_words_the_training_set_never_used(static: StaticEmbedding):
    known = set(static.words_.tolist())
    assert {"broadband", "roaming", "refund", "wifi", "u", "thx"} <= known
    assert analyzer()("Thx, my Wi-Fi's dead") == ["thx", "my", "wi", "fi", "s", "dead"]


def test_static_embedding_places_paraphrases_closer_than_other_topics(static: StaticEmbedding):
    a, b, c = static.transform(["my internet keeps dropping out every evening",
                                "the broadband connection cuts off each night",
                                "please send me a copy of last month's invoice"])
    assert a @ b > a @ c + 0.1


def test_static_embedding_rows_are_unit_length_or_zero_for_empty_text(static: StaticEmbedding):
    out = static.transform(["bill too high", ""])
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), [1.0, 0.0], atol=1e-5)
