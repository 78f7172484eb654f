"""Transcript lines are durable, ordered and never lost, also under concurrent writers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from bot.transcripts import TranscriptStore
from zhixun.database import make_engine


@pytest.fixture
def store(database_url: str) -> TranscriptStore:
    transcripts = TranscriptStore(make_engine(database_url))
    transcripts.create_tables()
    return transcripts


def test_lines_come_back_in_order_with_their_metadata(store: TranscriptStore):
    cid = store.open_conversation("web", sender="127.0.0.1")
    store.append(cid, "web", "citizen", "护照过期了怎么换")
    store.append(
        cid,
        "web",
        "bot",
        "【普通护照换发】…",
        kb_id="passport.renew",
        band="answer",
        scores=[{"kb_id": "passport.renew", "score": 0.93}],
        payload=[{"type": "kb_card"}],
    )
    lines = store.lines(cid)
    assert [(line.seq, line.role, line.text[:4]) for line in lines] == [
        (1, "citizen", "护照过期"),
        (2, "bot", "【普通护"),
    ]
    assert lines[1].kb_id == "passport.renew" and lines[1].scores[0]["score"] == 0.93
    assert lines[0].created_at <= lines[1].created_at and lines[0].created_at.tzinfo is not None


def test_concurrent_appends_lose_nothing(store: TranscriptStore):
    cid = store.open_conversation("web")
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: store.append(cid, "web", "citizen", f"第{i}条"), range(60)))
    lines = store.lines(cid)
    assert [line.seq for line in lines] == list(range(1, 61))
    assert sorted(line.text for line in lines) == sorted(f"第{i}条" for i in range(60))


def test_lines_survive_a_restart(database_url: str, store: TranscriptStore):
    cid = store.open_conversation("web")
    store.append(cid, "web", "citizen", "孩子出生后要办哪些手续")
    store.engine.dispose()  # the process goes away …
    reopened = TranscriptStore(make_engine(database_url))  # … and a new one starts
    assert [line.text for line in reopened.lines(cid)] == ["孩子出生后要办哪些手续"]


def test_append_to_unknown_conversation_fails_loudly(store: TranscriptStore):
    with pytest.raises(KeyError):
        store.append("0" * 32, "web", "citizen", "你好")
