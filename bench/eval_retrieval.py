"""`make eval`: answer quality of retrieval on the dev set, as tables.

    python -m bench.eval_retrieval              # evaluate with knowledge_base/calibration.json
    python -m bench.eval_retrieval --calibrate  # refit calibration.json on the dev set first

Besides the in-sample figures it prints 5-fold cross-validated ones (calibration
fitted on 4/5 of the dev set, measured on the rest), which is what to expect on
questions nobody has seen.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

import numpy as np

from knowledge_base import files
from knowledge_base.calibrate import BLIND_SET, DEV_SET, DevQuery, Features, against_kb, fit, read_dev_set, top_features
from knowledge_base.embedding_model import embedding_cache
from knowledge_base.retrieval import Calibration, KnowledgeIndex, confidences
from zhixun.settings import get_settings


def outcomes(features: Features, queries: list[DevQuery], calibration: Calibration) -> list[dict]:
    fused = features.fused(calibration.lexical_weight)
    order, _, _ = top_features(fused, features.covers)
    ids = features.ids
    rows = []
    for i, q in enumerate(queries):
        confidence = confidences(calibration, fused[i], order[i], features.covers)[0]  # as the service computes it
        ranked = [ids[j] for j in order[i, :3]]
        rows.append({"query": q, "top3": ranked, "confidence": confidence, "band": calibration.band(confidence)})
    return rows


def summarise(rows: list[dict]) -> dict[str, float]:
    scope = [r for r in rows if r["query"].in_scope]
    off = [r for r in rows if r["query"].label == "none:offtopic"]
    unc = [r for r in rows if r["query"].label == "none:uncovered"]
    answered = [r for r in rows if r["band"] == "answer"]

    def share(items: list[dict], test) -> float:
        return sum(1 for r in items if test(r)) / len(items) if items else float("nan")

    return {
        "top-1 accuracy (in scope)": share(scope, lambda r: r["top3"][0] == r["query"].label),
        "top-3 accuracy (in scope)": share(scope, lambda r: r["query"].label in r["top3"]),
        "answered directly (in scope)": share(scope, lambda r: r["band"] == "answer"),
        "answered and right (in scope)": share(
            scope, lambda r: r["band"] == "answer" and r["top3"][0] == r["query"].label
        ),
        "wrong among answered (all)": share(answered, lambda r: r["top3"][0] != r["query"].label),
        "off-topic rejected (band none)": share(off, lambda r: r["band"] == "none"),
        "uncovered rejected (band none)": share(unc, lambda r: r["band"] == "none"),
        "uncovered not answered (none or suggest)": share(unc, lambda r: r["band"] != "answer"),
    }


def cross_validated(features: Features, queries: list[DevQuery], folds: int = 5) -> dict[str, float]:
    rng = np.random.default_rng(7)
    fold_of = rng.integers(0, folds, len(queries))
    rows: list[dict] = []
    for k in range(folds):
        train = [i for i in range(len(queries)) if fold_of[i] != k]
        test = [i for i in range(len(queries)) if fold_of[i] == k]
        sub = Features(features.dense[train], features.lexical[train], features.ids, features.covers)
        calibration = fit(sub, [queries[i] for i in train])
        held = Features(features.dense[test], features.lexical[test], features.ids, features.covers)
        rows += outcomes(held, [queries[i] for i in test], calibration)
    return summarise(rows)


def print_table(title: str, columns: dict[str, dict[str, float]]) -> None:
    names = list(columns)
    metrics = list(next(iter(columns.values())))
    width = max(len(m) for m in metrics)
    print(f"\n{title}\n| {'metric'.ljust(width)} | " + " | ".join(names) + " |")
    print(f"|{'-' * (width + 2)}|" + "|".join("-" * (len(n) + 2) for n in names) + "|")
    for m in metrics:
        cells = " | ".join(f"{columns[n][m] * 100:.1f} %".rjust(len(n)) for n in names)
        print(f"| {m.ljust(width)} | {cells} |")


def report(name: str, rows: list[dict], n_misses: int, extra: dict[str, dict[str, float]]) -> None:
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        counts["in scope" if r["query"].in_scope else r["query"].label] += 1
    print(f"\n## {name}: {len(rows)} queries — " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print_table("Answer quality", {"measured": summarise(rows), **extra})

    by_style: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r["query"].in_scope:
            by_style[r["query"].style or "-"].append(r)
    print("\nTop-1 by question style\n| style | n | top-1 | answered |\n|---|---|---|---|")
    for style, items in sorted(by_style.items()):
        s = summarise(items)
        print(
            f"| {style} | {len(items)} | {s['top-1 accuracy (in scope)'] * 100:.1f} % | "
            f"{s['answered directly (in scope)'] * 100:.1f} % |"
        )

    misses = [
        r
        for r in rows
        if (r["query"].in_scope and r["top3"][0] != r["query"].label)
        or (not r["query"].in_scope and r["band"] == "answer")
    ]
    misses.sort(key=lambda r: -r["confidence"])
    print(f"\nWorst misses ({len(misses)} in all; most confident first)")
    for r in misses[:n_misses]:
        print(
            f"  {r['confidence']:.2f} {r['band']:7} want {r['query'].label:28} got {r['top3'][0]:28} {r['query'].text}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibrate", action="store_true", help="refit knowledge_base/calibration.json first")
    parser.add_argument("--misses", type=int, default=25, help="how many of the worst misses to list")
    args = parser.parse_args(argv)

    settings = get_settings()
    entries = files.load_directory(settings.kb_data_dir, require_coverage=False)
    cache = embedding_cache(settings.retrieval.model_dir, settings.retrieval.index_dir)
    index = KnowledgeIndex(entries, cache)
    kb_ids = {e.id for e in entries}
    queries = against_kb(read_dev_set(), kb_ids)
    features = Features.compute(index, queries)
    if args.calibrate:
        fit(features, queries).save()
    calibration = Calibration.load()
    print(
        f"KB: {len(entries)} entries; calibration: lexical weight {calibration.lexical_weight}, "
        f"answer ≥ {calibration.answer_threshold:.3f}, suggest ≥ {calibration.suggest_threshold:.3f}"
    )
    report(
        DEV_SET.name,
        outcomes(features, queries, calibration),
        args.misses,
        {"5-fold CV": cross_validated(features, queries)},
    )
    if BLIND_SET.exists():
        blind = against_kb(read_dev_set(BLIND_SET), kb_ids)
        report(
            BLIND_SET.name + " (never tuned on)",
            outcomes(Features.compute(index, blind), blind, calibration),
            args.misses,
            {},
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
