"""Group the questions the bot failed on into topics, with the embedding model retrieval uses.

Each distinct question (after the normalisation retrieval applies) is embedded as a `query:` by the
very model the live index holds, then grouped by average-linkage agglomerative clustering on cosine
similarity: two groups merge while the mean similarity between their members stays at or above the
threshold. multilingual-e5 puts unrelated Chinese questions at about 0.80–0.87 and paraphrases at
about 0.89–0.95, hence the default (checked on paraphrase sets in tests/test_supervisor.py).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from console.analytics import FailedQuestion
from knowledge_base.retrieval import Retriever
from knowledge_base.schema import normalise_question
from knowledge_base.text import normalise

DEFAULT_THRESHOLD = 0.885
MAX_DISTINCT = 1000  # the most frequent distinct questions are clustered (O(n²) memory, about a second)
CHUNK = 32
EXAMPLES = 6
Encode = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class Cluster:
    id: str
    size: int  # failed lines
    representative: str
    examples: list[str]  # distinct questions, most frequent first
    questions: list[str]  # every distinct question in the cluster
    guessed: list[tuple[str, int]]  # KB items the bot matched or ranked first, most often first
    conversations: int
    repeated_miss: int
    last_seen: str

    def to_json(self, title_of: Callable[[str], str | None]) -> dict[str, Any]:
        return {
            "id": self.id,
            "size": self.size,
            "representative": self.representative,
            "examples": self.examples,
            "questions": self.questions,
            "guessed": [{"kb_id": k, "title": title_of(k), "count": n} for k, n in self.guessed],
            "top_guess": {"kb_id": self.guessed[0][0], "title": title_of(self.guessed[0][0])} if self.guessed else None,
            "conversations": self.conversations,
            "repeated_miss": self.repeated_miss,
            "last_seen": self.last_seen,
        }


def retriever_encoder(retriever: Retriever) -> Encode:
    """The live index's model, through its embedding cache's worker thread (`query: ` prompt), so citizens'
    questions are encoded exactly as retrieval encodes them, and are not written to the on-disk cache."""

    cache = retriever.index.dense.cache

    def encode(texts: list[str]) -> np.ndarray:
        # One chunk at a time: citizens' queries share the model's thread and wait for a chunk, not all.
        chunks = [cache.encode(texts[i : i + CHUNK], "query") for i in range(0, len(texts), CHUNK)]
        return np.concatenate(chunks) if chunks else np.zeros((0, cache.dim), np.float32)

    return encode


def agglomerate(vectors: np.ndarray, threshold: float) -> list[list[int]]:
    """Average-linkage clustering of unit vectors; groups of row numbers, each merged while its mean
    pairwise cosine to the other group is ≥ `threshold`."""
    n = len(vectors)
    if n == 0:
        return []
    sim = (vectors @ vectors.T).astype(np.float64)
    np.fill_diagonal(sim, -np.inf)
    sizes = np.ones(n)
    members: list[list[int]] = [[i] for i in range(n)]
    alive = np.ones(n, dtype=bool)
    while alive.sum() > 1:
        flat = int(np.argmax(sim))
        i, j = divmod(flat, n)
        if sim[i, j] < threshold:
            break
        merged = (sizes[i] * sim[i] + sizes[j] * sim[j]) / (sizes[i] + sizes[j])
        sim[i], sim[:, i] = merged, merged
        sim[j], sim[:, j] = -np.inf, -np.inf
        sim[i, i] = -np.inf
        sim[~alive, i] = sim[i, ~alive] = -np.inf
        sizes[i] += sizes[j]
        members[i] += members[j]
        members[j] = []
        alive[j] = False
    return [m for m in members if m]


def cluster_failed(
    failed: Sequence[FailedQuestion], encode: Encode, threshold: float = DEFAULT_THRESHOLD
) -> list[Cluster]:
    """Clusters of `failed`, largest first."""
    groups: dict[str, list[FailedQuestion]] = {}
    shown: dict[str, str] = {}
    for item in failed:
        text = normalise(item.text)
        key = normalise_question(text)
        if not key:
            continue
        groups.setdefault(key, []).append(item)
        shown.setdefault(key, " ".join(item.text.split()))
    keys = sorted(groups, key=lambda k: (-len(groups[k]), k))[:MAX_DISTINCT]
    if not keys:
        return []
    vectors = np.asarray(encode([normalise(shown[k]) for k in keys]), dtype=np.float32)
    clusters = []
    for rows in agglomerate(vectors, threshold):
        weights = np.array([len(groups[keys[r]]) for r in rows], dtype=np.float64)
        block = vectors[rows] @ vectors[rows].T
        centre = (block * weights).sum(axis=1) / weights.sum()  # weighted mean similarity to the cluster
        best = rows[int(np.argmax(centre + 1e-6 * weights))]
        items = [item for r in rows for item in groups[keys[r]]]
        ordered = sorted(rows, key=lambda r: (-len(groups[keys[r]]), keys[r]))
        guesses = Counter(item.guess for item in items if item.guess)
        questions = [shown[keys[r]] for r in ordered]
        clusters.append(
            Cluster(
                id=hashlib.sha1("\n".join(sorted(keys[r] for r in rows)).encode()).hexdigest()[:12],
                size=len(items),
                representative=shown[keys[best]],
                examples=questions[:EXAMPLES],
                questions=questions,
                guessed=guesses.most_common(3),
                conversations=len({item.conversation_id for item in items}),
                repeated_miss=sum(1 for item in items if item.repeated_miss),
                last_seen=max(item.created_at for item in items).isoformat(),
            )
        )
    clusters.sort(key=lambda c: (-c.size, c.representative))
    return clusters
