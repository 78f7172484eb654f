"""What people usually need next: curated `related` links first, then the 一件事 theme that
bundles this item, then the next step of the life event (出生 → 上学 → 就业 → 结婚 → 购房 → 退休 → 身后事;
企业开办 → 经营 → 注销)."""

from __future__ import annotations

from knowledge_base.schema import Entry

LIFE_EVENTS = (
    ("出生", "上学", "就业创业", "婚育", "住房", "养老退休", "身后事"),
    ("企业开办", "企业经营", "企业变更注销"),
)


def _next_theme(theme: str) -> str | None:
    for chain in LIFE_EVENTS:
        if theme in chain[:-1]:
            return chain[chain.index(theme) + 1]
    return None


def next_items(entry: Entry, entries: list[Entry], limit: int = 4) -> list[str]:
    by_id = {e.id: e for e in entries}
    picks: list[str] = [r for r in entry.related if r in by_id]
    picks += [e.id for e in entries if any(c.id == entry.id for c in e.components)]
    following = _next_theme(entry.theme)
    if following:
        stage = [e for e in entries if e.theme == following]
        # A 一件事 theme of the next stage covers the most ground; else the stage's first item.
        stage.sort(key=lambda e: (not e.id.startswith("onething."), entries.index(e)))
        picks += [e.id for e in stage[:1]]
    seen: list[str] = []
    for kb_id in picks:
        if kb_id != entry.id and kb_id not in seen:
            seen.append(kb_id)
    return seen[:limit]
