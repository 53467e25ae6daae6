"""The default recipe's parts: the static token embedding and how thresholds are chosen."""

from __future__ import annotations

import numpy as np
import pytest

from ticketclf.model.static import StaticEmbedding, analyzer
from ticketclf.model.train import (
    TrainSpec,
    cross_validation_sample,
    fold_splits,
    kept_and_flagged,
    train,
)

from .conftest import corpus_rows, write_csv


@pytest.fixture(scope="module")
def static() -> StaticEmbedding:
    return StaticEmbedding().fit(["unused: the table is distilled beforehand"])


def test_static_embedding_knows_words_the_training_set_never_used(static: StaticEmbedding):
    known = set(static.table()[0].tolist())
    assert {"broadband", "roaming", "refund", "wifi", "u", "thx"} <= known
    assert analyzer()("Thx, my Wi-Fi's dead") == ["thx", "my", "wi", "fi", "s", "dead"]


def test_a_model_names_the_static_table_and_is_refused_when_another_is_installed(
        tmp_path, monkeypatch):
    """The table stays in the package (a model file is 2 MB, not 14): a model trained with
    one table must not silently run on another."""
    import shutil

    from ticketclf.errors import ConfigError
    from ticketclf.model import load_model
    from ticketclf.model import static as static_module

    rows = corpus_rows(12)
    model = tmp_path / "m"
    train(TrainSpec(files=[write_csv(tmp_path / "t.csv", ["text", "category", "sentiment"],
                                     rows)], folds=0), model)
    assert (model / "model.skops").stat().st_size < 5_000_000
    other = tmp_path / "static.npz"
    shutil.copy(static_module.TABLE_PATH, other)
    with open(other, "ab") as f:
        f.write(b"\0")  # another file: another hash
    monkeypatch.setattr(static_module, "TABLE_PATH", other)
    static_module._package_table.cache_clear()
    try:
        with pytest.raises(ConfigError, match="trained with static word table"):
            load_model(model)
    finally:
        static_module._package_table.cache_clear()


def test_a_model_that_carries_its_own_static_table_uses_it_not_the_packages():
    """Models made before the table stayed in the package hold words_ and vectors_: they
    must keep loading and giving their own embedding whatever table is installed."""
    own = StaticEmbedding()
    own.words_ = np.array(["bill", "wifi"])
    own.vectors_ = np.array([[1, 0], [0, 1]], dtype=np.float16)
    assert own.transform(["my bill", "wifi wifi", "nothing known"]).tolist() == [
        [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]


def test_static_embedding_places_paraphrases_closer_than_other_topics(static: StaticEmbedding):
    a, b, c = static.transform(["my internet keeps dropping out every evening",
                                "the broadband connection cuts off each night",
                                "please send me a copy of last month's invoice"])
    assert a @ b > a @ c + 0.1


def test_static_embedding_rows_are_unit_length_or_zero_for_empty_text(static: StaticEmbedding):
    out = static.transform(["bill too high", ""])
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), [1.0, 0.0], atol=1e-5)


def test_style_folds_never_put_one_style_on_both_sides():
    rng = np.random.default_rng(0)
    y = rng.choice(["BILLING", "NETWORK", "PLAN"], size=300)
    styles = rng.choice(["sms", "email", "chat", "social", "voice"], size=300)
    for train_idx, test_idx in fold_splits(y, styles, folds=3):
        assert not set(styles[train_idx]) & set(styles[test_idx])


def test_cross_validation_sample_caps_the_rows_and_keeps_every_label():
    y = np.array(["RARE"] + ["COMMON"] * 999)
    sample = cross_validation_sample(y, limit=100)
    assert 100 <= len(sample) <= 102  # the sample, plus one row of each label
    assert set(y[sample]) == {"RARE", "COMMON"}
    assert len(cross_validation_sample(y, limit=5000)) == 1000


def test_kept_and_flagged_reports_accuracy_above_the_threshold_and_the_share_below():
    confidence = np.array([0.9, 0.8, 0.7, 0.3])
    correct = np.array([1.0, 1.0, 0.0, 0.0])
    assert kept_and_flagged(confidence, correct, 0.75) == {
        "threshold": 0.75, "flagged": 0.5, "kept_accuracy": 1.0}


def test_training_with_a_style_column_chooses_thresholds_on_held_out_styles(tmp_path):
    rows = [[*r, ("sms", "email", "chat", "web")[i % 4]] for i, r in enumerate(corpus_rows(30))]
    data = write_csv(tmp_path / "train.csv", ["text", "category", "sentiment", "channel"], rows)
    card = train(TrainSpec(files=[data], style_column="channel",
                           target_precision={"category": 0.95, "sentiment": 0.8}),
                 tmp_path / "m")
    assert card["metrics"]["folds_hold_out"] == "channel"
    assert card["target_precision"] == {"category": 0.95, "sentiment": 0.8}
    at = card["metrics"]["category"]["at_threshold"]
    assert at["threshold"] == card["thresholds"]["category"] and 0 <= at["flagged"] <= 1
