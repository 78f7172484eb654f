"""Dense side of retrieval: sentence embeddings in a faiss inner-product index.

Every KB question and title is embedded as a `query:` (question-to-question
matching is symmetric for e5), every summary as a `passage:`. An entry's dense
score is the best cosine over its vectors.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import faiss
import numpy as np

RECENT_QUERIES = 4096  # ~6 MB of 384-d float32 vectors


class Embedder(Protocol):
    """What the index needs of a sentence-transformers model."""

    def get_embedding_dimension(self) -> int | None: ...

    def encode(self, sentences: list[str], **options: Any) -> Any: ...


class EmbeddingCache:
    """Vectors by (prompt, text) hash, kept on disk so a restart or KB edit re-embeds only what changed."""

    def __init__(self, embedder: Embedder, path: Path | None, dim: int):
        self.embedder, self.path, self.dim = embedder, path, dim
        self._lock = threading.Lock()
        self._vectors: dict[str, np.ndarray] = {}
        # All model calls run on one thread: torch keeps one OpenMP team instead of one per calling
        # thread (which oversubscribes the cores), and queued queries go in together as one batch.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")
        self._batcher = _QueryBatcher(self)
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()
        self.query_hits = self.query_misses = 0
        if path is not None and path.exists():
            with np.load(path) as data:
                self._vectors = {key: data[key] for key in data.files}

    @staticmethod
    def _key(prompt: str, text: str) -> str:
        return hashlib.sha1(f"{prompt}\0{text}".encode()).hexdigest()

    def embed(self, texts: Sequence[str], prompt: str) -> np.ndarray:
        keys = [self._key(prompt, t) for t in texts]
        with self._lock:
            missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in self._vectors}.items())
        if missing:
            vectors = self.encode([t for _, t in missing], prompt)
            with self._lock:
                self._vectors.update({k: v for (k, _), v in zip(missing, vectors, strict=True)})
                self._save()
        with self._lock:
            return np.stack([self._vectors[k] for k in keys]) if keys else np.zeros((0, self.dim), np.float32)

    def encode(self, texts: list[str], prompt: str, batch_size: int = 32) -> np.ndarray:
        # Chunked, so citizens' queries queued behind an index rebuild wait for one chunk, not the rebuild.
        chunks = [
            self._worker.submit(self._encode_now, texts[i : i + batch_size], prompt, batch_size)
            for i in range(0, len(texts), batch_size)
        ]
        return np.concatenate([c.result() for c in chunks]) if chunks else np.zeros((0, self.dim), np.float32)

    def query_vector(self, text: str) -> np.ndarray:
        """One query's vector. Citizens repeat themselves (hot questions, 「要多久」「在哪里办」), so recent
        queries are kept in a small LRU; the rest are batched with concurrent callers into one model call."""
        with self._lock:
            cached = self._recent.get(text)
            if cached is not None:
                self._recent.move_to_end(text)
                self.query_hits += 1
                return cached
        vector = self._batcher.submit(text)
        with self._lock:
            self._recent[text] = vector
            if len(self._recent) > RECENT_QUERIES:
                self._recent.popitem(last=False)
            self.query_misses += 1
        return vector

    def _encode_now(self, texts: list[str], prompt: str, batch_size: int) -> np.ndarray:
        vectors = self.embedder.encode(
            texts,
            prompt_name=prompt,
            normalize_embeddings=True,
            batch_size=batch_size,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, **self._vectors)  # type: ignore[arg-type]  # numpy's stub mistypes **arrays
        tmp.replace(self.path)


class _QueryBatcher:
    """Collects queries that arrive while the model is busy and embeds them in one call."""

    def __init__(self, cache: EmbeddingCache, max_batch: int = 32):
        self.cache, self.max_batch = cache, max_batch
        self._pending: list[tuple[str, Future[np.ndarray]]] = []
        self._lock = threading.Lock()

    def submit(self, text: str) -> np.ndarray:
        future: Future[np.ndarray] = Future()
        with self._lock:
            self._pending.append((text, future))
            first = len(self._pending) == 1
        if first:
            self.cache._worker.submit(self._drain)
        return future.result()

    def _drain(self) -> None:
        while True:
            with self._lock:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            if not batch:
                return
            try:
                vectors = self.cache._encode_now([t for t, _ in batch], "query", len(batch))
            except Exception as exc:  # every waiter hears about the failure
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for (_, future), vector in zip(batch, vectors, strict=True):
                future.set_result(vector)


class DenseIndex:
    def __init__(self, cache: EmbeddingCache, texts: Sequence[tuple[int, str, str]], n_docs: int):
        """`texts` are (document number, prompt name, text)."""
        self.cache, self.n_docs = cache, n_docs
        self.owner = np.array([doc for doc, _, _ in texts], dtype=np.int64)
        vectors = np.zeros((len(texts), cache.dim), dtype=np.float32)
        for prompt in {p for _, p, _ in texts}:
            rows = [i for i, (_, p, _) in enumerate(texts) if p == prompt]
            vectors[rows] = cache.embed([texts[i][2] for i in rows], prompt)
        self.index = faiss.IndexFlatIP(cache.dim)
        self.index.add(vectors)

    def scores(self, query: str, depth: int = 96) -> np.ndarray:
        """Best cosine per document (0 where none of its vectors came within `depth`)."""
        vector = self.cache.query_vector(query).reshape(1, -1)
        sims, ids = self.index.search(vector, min(depth, self.index.ntotal))
        best = np.zeros(self.n_docs, dtype=np.float32)
        for sim, row in zip(sims[0], ids[0], strict=True):
            if row >= 0:
                doc = self.owner[row]
                best[doc] = max(best[doc], sim)
        return best
