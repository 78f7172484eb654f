"""The KB store keeps every version with its author, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import pytest

from knowledge_base import files
from knowledge_base.store import KBStore
from zhixun.database import make_engine

ENTRIES = files.load_directory(require_coverage=False)


@pytest.fixture
def store(database_url: str) -> KBStore:
    kb = KBStore(make_engine(database_url))
    kb.create_tables()
    return kb


def test_import_then_read_back_everything(store: KBStore):
    result = store.save(ENTRIES, author="alice")
    assert (result.created, result.updated, result.unchanged) == (len(ENTRIES), 0, 0)
    assert store.all() == sorted(ENTRIES, key=lambda e: e.id)


def test_edit_creates_a_new_version_with_author(store: KBStore):
    store.save(ENTRIES, author="alice")
    before = store.revision()
    original = store.get("passport.apply")
    assert original is not None
    edited = original.model_copy(update={"fees": "普通护照120元/本（本市另收邮寄费15元）"})
    others = [e for e in ENTRIES if e.id != edited.id][:3]
    result = store.save([edited, *others], author="bob", note="fee update")
    assert result.updated == 1 and result.created == 0
    assert store.get("passport.apply").fees.startswith("普通护照120元/本（本市")
    history = store.history("passport.apply")
    assert [(v.version, v.created_by) for v in history] == [(1, "alice"), (2, "bob")]
    assert history[0].entry == original and history[1].note == "fee update"
    assert store.revision() > before


def test_saving_unchanged_entries_adds_no_version(store: KBStore):
    store.save(ENTRIES, author="alice")
    before = store.revision()
    assert store.save(ENTRIES, author="carol").unchanged == len(ENTRIES)
    assert store.revision() == before
    assert len(store.history(ENTRIES[-1].id)) == 1


def test_shipped_updates_reach_entries_no_curator_has_edited(database_url: str):
    from zhixun.app import seed_knowledge_base

    store = KBStore(make_engine(database_url))
    store.create_tables()
    seed_knowledge_base(store, files.DATA_DIR)
    shipped = {e.id: e for e in store.all()}
    curated = shipped["passport.renew"].model_copy(update={"fees": "本市另行公布的收费标准"})
    store.save([curated], author="alice", note="local fee")
    outdated = shipped["idcard.apply"].model_copy(update={"scenario": None})
    store.save([outdated], author="seed", note="an older release")
    seed_knowledge_base(store, files.DATA_DIR)
    assert store.get("idcard.apply") == shipped["idcard.apply"], "the newer shipped entry replaces the older one"
    assert store.get("passport.renew").fees == "本市另行公布的收费标准", "a curator's edit is never overwritten"
