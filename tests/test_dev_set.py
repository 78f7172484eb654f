"""The evaluation sets stay honest: shaped like real traffic, and never copied from the KB's questions."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from knowledge_base import files
from knowledge_base.calibrate import DEV_SET, read_dev_set
from knowledge_base.schema import normalise_question

BLIND_SET = DEV_SET.with_name("blind.tsv")
SETS = [p for p in (DEV_SET, BLIND_SET) if p.exists()]


def bigrams(text: str) -> set[str]:
    norm = normalise_question(text)
    return {norm[i : i + 2] for i in range(len(norm) - 1)} or {norm}


def test_dev_set_is_shaped_like_real_traffic():
    queries = read_dev_set()
    labels = Counter(q.label for q in queries)
    assert labels["none:offtopic"] >= 150 and labels["none:uncovered"] >= 50
    assert all(labels[i] >= 2 for i in files.coverage_ids()), "every item needs at least two dev queries"
    styles = Counter(q.style for q in queries if q.in_scope)
    assert {"short", "story", "subject", "multi", "typo", "regional", "colloquial", "formal"} <= set(styles)
    assert len({q.text for q in queries}) == len(queries)


@pytest.mark.parametrize("path", SETS, ids=[p.name for p in SETS])
def test_no_evaluation_query_is_a_kb_question(path: Path):
    kb_questions = [q for e in files.load_directory(require_coverage=False) for q in e.questions]
    exact = {normalise_question(q) for q in kb_questions}
    kb_grams = [(q, bigrams(q)) for q in kb_questions if len(normalise_question(q)) >= 6]
    leaks = []
    for query in read_dev_set(path):
        if normalise_question(query.text) in exact:
            leaks.append((query.text, "identical"))
            continue
        grams = bigrams(query.text)
        if len(grams) < 5:
            continue  # very short queries ("护照补办") legitimately coincide
        for question, other in kb_grams:
            if len(grams & other) / len(grams | other) >= 0.8:
                leaks.append((query.text, question))
                break
    assert not leaks, f"evaluation queries copied from the KB: {leaks[:10]}"
