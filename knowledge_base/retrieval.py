"""Hybrid retrieval: BM25 + dense cosine, fused, with a calibrated confidence and a band.

fused      = dense + w · lexical          (lexical: BM25 normalised to 0..1 by the query's ceiling)
confidence = σ(a · fused + b · margin + c) (margin: distance to the best other candidate)
band       = answer ≥ T_answer > suggest ≥ T_suggest > none

w, a, b, c and both thresholds are fitted on the held-out dev set
(`zhixun kb calibrate`, stored in calibration.json) — never on the KB's own questions.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from knowledge_base.dense import DenseIndex, EmbeddingCache
from knowledge_base.lexical import BM25Index
from knowledge_base.schema import Entry
from knowledge_base.text import normalise

log = logging.getLogger(__name__)
Band = Literal["answer", "suggest", "none"]
CALIBRATION_FILE = Path(__file__).resolve().parent / "calibration.json"
THEME_TIE = 0.005  # fused-score difference below which a 一件事 theme is preferred to its component


@dataclass(frozen=True)
class Calibration:
    lexical_weight: float = 0.5
    coef_score: float = 12.0
    coef_margin: float = 20.0
    intercept: float = -12.0
    answer_threshold: float = 0.6
    suggest_threshold: float = 0.3
    fitted_on: dict[str, object] = field(default_factory=dict)

    def confidence(self, fused: float, margin: float) -> float:
        z = self.coef_score * fused + self.coef_margin * margin + self.intercept
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))

    def band(self, confidence: float) -> Band:
        if confidence >= self.answer_threshold:
            return "answer"
        return "suggest" if confidence >= self.suggest_threshold else "none"

    @classmethod
    def load(cls, path: Path = CALIBRATION_FILE) -> Calibration:
        return cls(**json.loads(path.read_text(encoding="utf-8"))) if path.exists() else cls()

    def save(self, path: Path = CALIBRATION_FILE) -> None:
        path.write_text(json.dumps(asdict(self), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class Candidate:
    kb_id: str
    title: str
    confidence: float
    fused: float
    dense: float
    lexical: float


@dataclass(frozen=True)
class SearchResult:
    band: Band
    candidates: list[Candidate]

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None


def entry_document(entry: Entry) -> str:
    """The text BM25 sees: the title twice (it names the item), the questions, the summary."""
    return "\n".join([entry.title, entry.title, *entry.questions, entry.summary])


class KnowledgeIndex:
    """An immutable index over one snapshot of the KB; rebuilt, never mutated."""

    def __init__(self, entries: list[Entry], cache: EmbeddingCache):
        self.entries = entries
        self.by_id = {e.id: e for e in entries}
        position = {e.id: i for i, e in enumerate(entries)}
        # (theme, component) document pairs: a 一件事 entry covers each of its component items.
        self.covers = {(position[e.id], position[c.id]) for e in entries for c in e.components if c.id in position}
        self.lexical = BM25Index([entry_document(e) for e in entries])
        texts: list[tuple[int, str, str]] = []
        for doc, entry in enumerate(entries):
            texts += [(doc, "query", entry.title)] + [(doc, "query", q) for q in entry.questions]
            texts.append((doc, "passage", f"{entry.title}：{entry.summary}"))
        self.dense = DenseIndex(cache, texts, len(entries))

    def features(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """(dense, lexical) score per entry."""
        lexical, ceiling = self.lexical.scores(query)
        lex = np.asarray(lexical, dtype=np.float32) / max(ceiling, 1e-9)
        return self.dense.scores(query), lex


def ordered(fused: np.ndarray, covers: set[tuple[int, int]], k: int) -> np.ndarray:
    """The best `k` documents, best first; a theme tied with its own component goes first (it answers both)."""
    order = np.argsort(-fused)[:k]
    if len(order) > 1 and (order[1], order[0]) in covers and fused[order[0]] - fused[order[1]] < THEME_TIE:
        order[[0, 1]] = order[[1, 0]]
    return order


def confidences(
    calibration: Calibration, fused: np.ndarray, order: np.ndarray, covers: set[tuple[int, int]]
) -> list[float]:
    """Calibrated confidence of each ranked document (`order` as from `ordered`)."""
    best, second = float(fused[order[0]]), float(fused[order[1]]) if len(order) > 1 else 0.0
    result = [
        calibration.confidence(float(fused[i]), float(fused[i]) - (second if n == 0 else best))
        for n, i in enumerate(order)
    ]
    if len(order) > 1 and (order[0], order[1]) in covers:
        result[0] = max(result[0], result[1])  # a theme answers whatever its component answers
    return result


def rank(index: KnowledgeIndex, calibration: Calibration, query: str, k: int) -> list[Candidate]:
    dense, lexical = index.features(query)
    fused = dense + calibration.lexical_weight * lexical
    order = ordered(fused, index.covers, max(k, 2))
    confidence = confidences(calibration, fused, order, index.covers)
    return [
        Candidate(
            index.entries[i].id, index.entries[i].title, conf, float(fused[i]), float(dense[i]), float(lexical[i])
        )
        for i, conf in zip(order[:k], confidence[:k], strict=True)
    ]


class Retriever:
    """Thread-safe search over the current KB; rebuilds in the background when the KB changes."""

    def __init__(
        self,
        load_entries: Callable[[], list[Entry]],
        revision: Callable[[], int],
        cache: EmbeddingCache,
        calibration: Calibration,
        *,
        max_candidates: int = 3,
        check_every: float = 2.0,
    ):
        self._load_entries, self._revision, self._cache = load_entries, revision, cache
        self.calibration, self.max_candidates, self.check_every = calibration, max_candidates, check_every
        self._lock = threading.Lock()
        self._rebuilding = False
        self._checked_at = 0.0
        self.revision = revision()
        self.index = KnowledgeIndex(load_entries(), cache)

    def search(self, text: str) -> SearchResult:
        self._maybe_refresh()
        query = normalise(text)
        if not query:
            return SearchResult("none", [])
        candidates = rank(self.index, self.calibration, query, self.max_candidates)
        return SearchResult(self.calibration.band(candidates[0].confidence), candidates)

    def entry(self, kb_id: str) -> Entry | None:
        return self.index.by_id.get(kb_id)

    def department(self, kb_id: str) -> str | None:
        entry = self.entry(kb_id)
        return entry.department if entry else None

    def rebuild(self) -> None:
        revision = self._revision()
        index = KnowledgeIndex(self._load_entries(), self._cache)
        with self._lock:
            self.index, self.revision = index, revision
        log.info("retrieval index rebuilt at KB revision %s (%d entries)", revision, len(index.entries))

    def _maybe_refresh(self) -> None:
        now = time.monotonic()
        with self._lock:
            if self._rebuilding or now - self._checked_at < self.check_every:
                return
            self._checked_at = now
        if self._revision() == self.revision:
            return
        with self._lock:
            if self._rebuilding:
                return
            self._rebuilding = True
        threading.Thread(target=self._rebuild_in_background, daemon=True).start()

    def _rebuild_in_background(self) -> None:
        try:
            self.rebuild()
        except Exception:
            log.exception("retrieval index rebuild failed; keeping the previous index")
        finally:
            with self._lock:
                self._rebuilding = False
