"""Okapi BM25 over entry documents (title, questions, summary)."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence

from knowledge_base.text import tokens


class BM25Index:
    def __init__(self, documents: Sequence[str], k1: float = 1.2, b: float = 0.6):
        self.k1, self.b = k1, b
        counts = [Counter(tokens(doc)) for doc in documents]
        lengths = [sum(c.values()) for c in counts]
        self.n_docs = len(documents)
        self.avg_len = sum(lengths) / max(self.n_docs, 1)
        self.postings: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for doc_id, (counter, length) in enumerate(zip(counts, lengths, strict=True)):
            norm = k1 * (1 - b + b * length / self.avg_len)
            for term, tf in counter.items():
                self.postings[term].append((doc_id, tf * (k1 + 1) / (tf + norm)))
        self.idf = {
            term: math.log(1 + (self.n_docs - len(p) + 0.5) / (len(p) + 0.5)) for term, p in self.postings.items()
        }

    def scores(self, query: str) -> tuple[list[float], float]:
        """BM25 per document, and the query's best achievable score (for normalising to 0..1).

        Terms the KB never uses count fully in the ceiling: a query mostly about
        something else must not look like a strong match because one word hit.
        """
        result = [0.0] * self.n_docs
        ceiling = 0.0
        unseen_idf = math.log(1 + (self.n_docs + 0.5) / 0.5)
        for term in set(tokens(query)):
            idf = self.idf.get(term)
            ceiling += (idf if idf is not None else unseen_idf) * (self.k1 + 1)
            if idf is None:
                continue
            for doc_id, weight in self.postings[term]:
                result[doc_id] += idf * weight
        return result, ceiling
