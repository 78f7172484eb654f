"""Fit the fusion weight, confidence curve and band thresholds on the dev set.

The dev set (`tests/data/dev.tsv`) holds citizen-style questions written apart
from the KB's own questions, plus off-topic and uncovered-but-governmental
queries labelled `none`. A wrong answer is taken to cost three times what a
right one gains: the answer threshold maximises `right − 3·wrong`.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from knowledge_base.retrieval import Calibration, KnowledgeIndex, ordered

DEV_SET = Path(__file__).resolve().parents[1] / "tests" / "data" / "dev.tsv"
BLIND_SET = DEV_SET.with_name("blind.tsv")  # written without sight of the KB or dev set; report-only
NONE_LABELS = ("none:offtopic", "none:uncovered")
WRONG_ANSWER_COST = 3.0
OFF_TOPIC_REJECTION_TARGET = 0.97
LEXICAL_WEIGHTS = np.round(np.arange(0.0, 1.55, 0.05), 2)


@dataclass(frozen=True)
class DevQuery:
    text: str
    label: str  # a kb id, or one of NONE_LABELS
    style: str

    @property
    def in_scope(self) -> bool:
        return self.label not in NONE_LABELS


def read_dev_set(path: Path = DEV_SET) -> list[DevQuery]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = csv.DictReader((line for line in handle if not line.startswith("#")), delimiter="\t")
        return [DevQuery(r["text"], r["label"], r.get("style") or "") for r in rows]


def against_kb(queries: list[DevQuery], kb_ids: set[str]) -> list[DevQuery]:
    """Queries as this KB sees them: an item it lacks is, for it, an uncovered question."""
    return [q if not q.in_scope or q.label in kb_ids else DevQuery(q.text, "none:uncovered", q.style) for q in queries]


@dataclass
class Features:
    """Per query, per entry: dense and lexical scores (computed once, reused for every weight)."""

    dense: np.ndarray  # (queries, entries)
    lexical: np.ndarray
    ids: list[str]
    covers: set[tuple[int, int]]

    @classmethod
    def compute(cls, index: KnowledgeIndex, queries: list[DevQuery]) -> Features:
        from knowledge_base.text import normalise

        pairs = [index.features(normalise(q.text)) for q in queries]
        return cls(
            np.stack([d for d, _ in pairs]),
            np.stack([lex for _, lex in pairs]),
            [e.id for e in index.entries],
            index.covers,
        )

    def fused(self, weight: float) -> np.ndarray:
        return self.dense + weight * self.lexical


def top_features(fused: np.ndarray, covers: set[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-3 entry indices, the best one's fused score and its margin over the runner-up, per query."""
    order = np.stack([ordered(row, covers, 3) for row in fused])
    rows = np.arange(len(fused))
    best, second = fused[rows, order[:, 0]], fused[rows, order[:, 1]]
    return order, best, best - second


def fit(features: Features, queries: list[DevQuery]) -> Calibration:
    labels = np.array([q.label for q in queries])
    scope = np.array([q.in_scope for q in queries])
    ids = np.array(features.ids)

    def top1(weight: float) -> float:
        order, _, _ = top_features(features.fused(weight), features.covers)
        return float((ids[order[scope, 0]] == labels[scope]).mean())

    weight = float(max(LEXICAL_WEIGHTS, key=lambda w: (round(top1(w), 4), -w)))
    order, best, margin = top_features(features.fused(weight), features.covers)
    right = scope & (ids[order[:, 0]] == labels)
    model = LogisticRegression(C=10.0).fit(np.column_stack([best, margin]), right.astype(int))
    curve = Calibration(
        lexical_weight=weight,
        coef_score=float(model.coef_[0][0]),
        coef_margin=float(model.coef_[0][1]),
        intercept=float(model.intercept_[0]),
    )
    confidence = np.array([curve.confidence(b, m) for b, m in zip(best, margin, strict=True)])

    off_topic = labels == "none:offtopic"
    suggest = float(np.quantile(confidence[off_topic], OFF_TOPIC_REJECTION_TARGET)) if off_topic.any() else 0.3
    candidates = sorted({round(c, 4) for c in confidence if c >= suggest} | {round(suggest, 4)})

    def gain(threshold: float) -> float:
        answered = confidence >= threshold
        return float((answered & right).sum() - WRONG_ANSWER_COST * (answered & ~right).sum())

    answer = max(candidates, key=lambda t: (gain(t), -t))
    return Calibration(
        lexical_weight=weight,
        coef_score=curve.coef_score,
        coef_margin=curve.coef_margin,
        intercept=curve.intercept,
        answer_threshold=round(max(answer, suggest) + 1e-4, 4),
        suggest_threshold=round(suggest + 1e-4, 4),
        fitted_on={"dev_queries": len(queries), "in_scope": int(scope.sum()), "date": dt.date.today().isoformat()},
    )
