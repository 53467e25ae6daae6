"""Distil all-MiniLM-L6-v2 into a static WordPiece-token table (ticketclf/model/static.npz).

tokenlearn-style: every vocabulary token starts at MiniLM's embedding of the token alone
([CLS] token [SEP], mean-pooled: model2vec's table), and the tokens seen in a pool of tens of
thousands of unlabelled support texts are then fitted by ridge-regularised least squares so
that the mean of a text's token vectors reproduces MiniLM's embedding of the whole text. The
pool has no evaluation text: banking77 train, Bitext, MultiDoGO and the 80 % of data/telecom
that models/build_default.py trains on. PCA then keeps the leading components, stored as
float16 so the table fits inside a model file of a few MB.

Slow part: encoding the pool with the NumPy encoder (~7 min here, cached in build/static/).
Run `.venv/bin/python models/build_static.py --shared-data ../shared/data`; the table is
committed, so `ticketclf train` never needs the encoder.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from scipy import sparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "models"))

from build_default import is_holdout  # noqa: E402

from ticketclf.model.encoder import _encoder, weights_dir  # noqa: E402
from ticketclf.model.static import TABLE_PATH, analyzer  # noqa: E402

DIMENSIONS = 256
RIDGE = 0.5  # pull towards the single-token start, for tokens seen in few pool texts
STEPS = 150  # the pool's error stops falling after ~100 steps


def pool_texts(shared: Path) -> list[str]:
    texts: list[str] = []
    with open(shared / "banking77" / "train.csv", encoding="utf-8", newline="") as f:
        texts += [r["text"] for r in csv.DictReader(f)]
    placeholder = re.compile(r"\{\{\s*([^}]+?)\s*\}\}")
    with open(shared / "bitext" / "bitext_20k_sample.csv", encoding="utf-8-sig",
              newline="") as f:
        texts += [placeholder.sub(lambda m: m.group(1).lower(), r["utterance"])
                  for r in csv.DictReader(f)]
    for path in sorted((shared / "multidogo").glob("*_train.tsv")):
        with open(path, encoding="utf-8", newline="") as f:
            texts += [fields[3] for fields in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
                      if len(fields) == 6 and len(fields[3].split()) >= 3]
    for path in sorted((ROOT / "data" / "telecom").glob("*.csv")):
        with open(path, encoding="utf-8", newline="") as f:
            texts += [r["text"] for r in csv.DictReader(f) if not is_holdout(r["text"])]
    return sorted(set(t.strip() for t in texts if t.strip()))


def encode_pool(texts: list[str], cache: Path) -> np.ndarray:
    if cache.exists():
        return np.load(cache)["targets"]
    encoder = _encoder()
    out = np.empty((len(texts), 384), np.float32)
    started = time.perf_counter()
    step = 2048
    for start in range(0, len(texts), step):
        out[start:start + step] = encoder.encode(texts[start:start + step], 64)
        print(f"encoded {min(start + step, len(texts))}/{len(texts)} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, targets=out)
    return out


def single_tokens(cache: Path) -> np.ndarray:
    """model2vec's start: each vocabulary token encoded on its own."""
    if cache.exists():
        return np.load(cache)["tokens"]
    encoder = _encoder()
    vocab = encoder.tokenizer.get_vocab_size()
    cls, sep = encoder.tokenizer.token_to_id("[CLS]"), encoder.tokenizer.token_to_id("[SEP]")
    out = np.empty((vocab, 384), np.float32)
    for start in range(0, vocab, 1024):
        ids = np.arange(start, min(start + 1024, vocab))
        batch = np.stack([np.full_like(ids, cls), ids, np.full_like(ids, sep)], axis=1)
        out[ids] = encoder.forward(batch, np.ones(batch.shape, bool))
    np.savez(cache, tokens=out)
    return out


def fit_table(bag: sparse.csr_matrix, targets: np.ndarray, start: np.ndarray) -> np.ndarray:
    """min |bag @ T - targets|^2 + RIDGE * |T - start|^2 (per pool text, mean), by Adam."""
    table = start.copy()
    m, v = np.zeros_like(table), np.zeros_like(table)
    bag_t = bag.T.tocsr()
    n = bag.shape[0]
    for step in range(1, STEPS + 1):
        residual = bag @ table - targets
        grad = (bag_t @ residual) * (2 / n) + (2 * RIDGE / n) * (table - start)
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad * grad
        table -= 0.01 * (m / (1 - 0.9 ** step)) / (np.sqrt(v / (1 - 0.999 ** step)) + 1e-8)
        if step % 50 == 0:
            print(f"step {step}: mean squared error {np.mean(residual ** 2) * 384:.4f}",
                  flush=True)
    return table


def word_pieces(texts: list[str], tokenizer_json: str) -> list[list[int]]:
    """Each text's WordPiece token ids, without [CLS] and [SEP]."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(tokenizer_json)
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=False)]


def mean_pooling(ids: list[list[int]], vocab: int) -> sparse.csr_matrix:
    """A (texts x vocab) matrix whose row i averages text i's tokens."""
    lengths = np.fromiter((len(x) for x in ids), np.int64, len(ids))
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.fromiter((t for x in ids for t in x), np.int32, int(indptr[-1]))
    data = np.repeat((1.0 / np.maximum(lengths, 1)).astype(np.float32), lengths)
    return sparse.csr_matrix((data, indices, indptr), shape=(len(ids), vocab))


def word_list(texts: list[str], tokenizer_json: str) -> list[str]:
    """The words the model can embed: every whole-word entry of MiniLM's vocabulary and every
    word seen at least twice in the pool, as StaticEmbedding's analyzer splits them."""
    vocab = json.loads(tokenizer_json)["model"]["vocab"]
    words = {w for w in vocab if not w.startswith("##") and not w.startswith("[")}
    counts = Counter(t for text in texts for t in analyzer()(text))
    return sorted(words | {w for w, n in counts.items() if n >= 2})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared-data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "static")
    parser.add_argument("--out", type=Path, default=TABLE_PATH)
    args = parser.parse_args()
    texts = pool_texts(args.shared_data)
    print(f"{len(texts)} pool texts", flush=True)
    args.work.mkdir(parents=True, exist_ok=True)
    tokenizer_json = (weights_dir() / "tokenizer.json").read_text(encoding="utf-8")
    fitted = args.work / "token_table.npy"
    if fitted.exists():
        table = np.load(fitted)
    else:
        start = single_tokens(args.work / "single_tokens.npz")
        targets = encode_pool(texts, args.work / "pool_targets.npz")
        bag = mean_pooling(word_pieces(texts, tokenizer_json), len(start))
        table = fit_table(bag, targets, start)
        np.save(fitted, table)
    # PCA without centring keeps a text's vector the sum of its tokens' vectors.
    _u, _s, vt = np.linalg.svd(table, full_matrices=False)
    reduced = table @ vt[:DIMENSIONS].T
    words = word_list(texts, tokenizer_json)
    vectors = np.stack([reduced[ids].sum(axis=0) for ids in word_pieces(words, tokenizer_json)])
    np.savez_compressed(args.out, words=np.array(words), vectors=vectors.astype(np.float16))
    print(f"{len(words)} words x {DIMENSIONS} -> {args.out} "
          f"({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
