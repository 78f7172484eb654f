"""Transcript lines are durable, ordered and never lost, also under concurrent writers, and tamper-evident."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import JSON, Column, DateTime, ForeignKey, Integer, MetaData, String, Table, Text, insert, text

from bot.transcripts import TranscriptLine, TranscriptStore
from zhixun.database import add_missing_columns, make_engine


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


def sql(store: TranscriptStore, statement: str, **params) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(statement), params)


def conversation_with(store: TranscriptStore, n: int) -> str:
    cid = store.open_conversation("web")
    for i in range(1, n + 1):
        store.append(cid, "web", "citizen" if i % 2 else "bot", f"第{i}句：社保卡怎么补办？")
    return cid


def only_problem(store: TranscriptStore, cid: str) -> tuple[int, str]:
    problems = store.verify(cid).problems
    assert len(problems) == 1, problems
    assert problems[0].conversation_id == cid
    return problems[0].seq, problems[0].kind


def test_chain_verifies_after_many_appends_and_a_restart(database_url: str, store: TranscriptStore):
    awkward = {
        "scores": [0.1 + 0.2, 1e-7, 1.0, 2.5e20, -0.0],
        "text": '引号"、反斜杠\\、换行\n、表情😀、全角１２３',
        "nested": {"b": [1, {"z": None, "a": True}], "a": "护照"},
    }
    cids = [store.open_conversation("web") for _ in range(3)]
    for i in range(40):
        store.append(
            cids[i % 3],
            "web",
            "bot",
            f"第{i}条\r\n回复",
            payload=awkward,
            kb_id="passport.renew",
            band="answer",
            scores=[{"kb_id": "passport.renew", "score": 0.9 - i / 1000}],
        )
    report = store.verify()
    assert report.ok, report.problems
    assert (report.conversations, report.lines, report.legacy_lines) == (3, 40, 0)

    store.engine.dispose()
    reopened = TranscriptStore(make_engine(database_url))
    assert reopened.verify().ok
    lines = reopened.lines(cids[0])
    assert lines[0].prev_hash is None and all(b.prev_hash == a.hash for a, b in pairwise(lines))
    assert reopened.conversation(cids[0]).last_hash == lines[-1].hash


def test_appended_line_hashes_what_is_read_back(store: TranscriptStore):
    cid = store.open_conversation("web")
    written = store.append(cid, "web", "citizen", "孩子出生", payload={"score": 0.30000000000000004})
    (read,) = store.lines(cid)
    assert read == written and read.canonical() == written.canonical() and read.hash == read.computed_hash()


def test_canonical_form_ignores_the_time_zone_it_is_read_in():
    moment = dt.datetime(2026, 12, 8, 9, 30, tzinfo=ZoneInfo("Asia/Shanghai"))  # microsecond 0
    here = TranscriptLine("c", 1, moment, "web", "citizen", "你好")
    utc = TranscriptLine("c", 1, moment.astimezone(dt.UTC), "web", "citizen", "你好")
    assert here.canonical() == utc.canonical()
    assert '"created_at":"2026-12-08T01:30:00.000000+00:00"' in here.canonical()


def test_chain_verifies_when_the_database_session_is_not_utc(database_url: str, store: TranscriptStore):
    if store.engine.dialect.name != "postgresql":
        pytest.skip("only PostgreSQL converts timestamps to the session's time zone")
    sql(store, f"ALTER DATABASE \"{store.engine.url.database}\" SET timezone TO 'Asia/Shanghai'")
    store.engine.dispose()
    cid = conversation_with(store, 3)
    with store.engine.connect() as conn:
        raw = conn.execute(text("SELECT created_at FROM transcript_messages LIMIT 1")).scalar_one()
    assert raw.utcoffset() == dt.timedelta(hours=8)
    assert store.lines(cid)[0].created_at.utcoffset() == dt.timedelta(0)
    assert store.verify(cid).ok


def test_concurrent_appends_form_one_unbroken_chain(store: TranscriptStore):
    cid = store.open_conversation("web")
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: store.append(cid, "web", "citizen", f"第{i}条"), range(60)))
    report = store.verify(cid)
    assert report.ok, report.problems
    assert report.lines == 60
    lines = store.lines(cid)
    assert [line.created_at for line in lines] == sorted(line.created_at for line in lines)


def test_editing_a_stored_line_is_caught(store: TranscriptStore):
    cid, other = conversation_with(store, 5), conversation_with(store, 5)
    sql(store, "UPDATE transcript_messages SET text = '改过的话' WHERE conversation_id = :c AND seq = 3", c=cid)
    assert only_problem(store, cid) == (3, "edited")
    assert store.verify(other).ok and [p.conversation_id for p in store.verify().problems] == [cid]


def test_editing_a_line_and_its_hash_breaks_the_next_link(store: TranscriptStore):
    cid = conversation_with(store, 5)
    edited = replace(store.lines(cid)[1], text="改过的话")
    sql(
        store,
        "UPDATE transcript_messages SET text = :t, hash = :h WHERE conversation_id = :c AND seq = 2",
        t=edited.text,
        h=edited.computed_hash(),
        c=cid,
    )
    assert only_problem(store, cid) == (3, "broken_link")


def test_editing_the_last_line_and_its_hash_is_caught(store: TranscriptStore):
    cid = conversation_with(store, 4)
    edited = replace(store.lines(cid)[-1], text="改过的话")
    sql(
        store,
        "UPDATE transcript_messages SET text = :t, hash = :h WHERE conversation_id = :c AND seq = 4",
        t=edited.text,
        h=edited.computed_hash(),
        c=cid,
    )
    assert only_problem(store, cid) == (4, "tail")


def test_deleting_a_middle_line_is_caught(store: TranscriptStore):
    cid = conversation_with(store, 6)
    sql(store, "DELETE FROM transcript_messages WHERE conversation_id = :c AND seq = 4", c=cid)
    assert only_problem(store, cid) == (4, "deleted")


def test_deleting_the_last_line_is_caught(store: TranscriptStore):
    cid = conversation_with(store, 6)
    sql(store, "DELETE FROM transcript_messages WHERE conversation_id = :c AND seq = 6", c=cid)
    assert only_problem(store, cid) == (6, "deleted")


def test_deleting_every_line_is_caught(store: TranscriptStore):
    cid = conversation_with(store, 2)
    sql(store, "DELETE FROM transcript_messages WHERE conversation_id = :c", c=cid)
    assert only_problem(store, cid) == (1, "deleted")


def test_verify_of_an_unknown_conversation_fails_loudly(store: TranscriptStore):
    with pytest.raises(KeyError):
        store.verify("0" * 32)


def previous_release_tables() -> MetaData:
    """transcript tables as the release before hash chaining created them."""
    metadata = MetaData()
    Table(
        "conversations",
        metadata,
        Column("id", String(64), primary_key=True),
        Column("channel", String(32), nullable=False),
        Column("sender", String(128), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("last_seq", Integer, nullable=False),
        Column("last_active_at", DateTime(timezone=True), nullable=False, index=True),
    )
    Table(
        "transcript_messages",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("conversation_id", ForeignKey("conversations.id"), nullable=False, index=True),
        Column("seq", Integer, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, index=True),
        Column("channel", String(32), nullable=False),
        Column("role", String(16), nullable=False),
        Column("text", Text, nullable=False),
        Column("payload", JSON),
        Column("kb_id", String(80)),
        Column("band", String(16)),
        Column("scores", JSON),
    )
    return metadata


def test_database_of_the_previous_release_is_upgraded_and_keeps_its_lines(database_url: str):
    engine = make_engine(database_url)
    old = previous_release_tables()
    old.create_all(engine)
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(old.tables["conversations"]),
            [{"id": "legacy", "channel": "web", "sender": "", "created_at": now, "last_seq": 2, "last_active_at": now}],
        )
        conn.execute(
            insert(old.tables["transcript_messages"]),
            [
                {
                    "conversation_id": "legacy",
                    "seq": seq,
                    "created_at": now,
                    "channel": "web",
                    "role": "citizen",
                    "text": t,
                }
                for seq, t in ((1, "护照丢了"), (2, "要带什么"))
            ],
        )
    store = TranscriptStore(engine)
    store.create_tables()
    assert add_missing_columns(engine, old.tables.values()) == []  # already upgraded: nothing left to add

    assert [line.text for line in store.lines("legacy")] == ["护照丢了", "要带什么"]
    store.append("legacy", "web", "bot", "【护照挂失补发】…")
    store.append("legacy", "web", "citizen", "谢谢")
    report = store.verify()
    assert report.ok, report.problems
    assert (report.lines, report.legacy_lines) == (4, 2)

    sql(store, "UPDATE transcript_messages SET hash = NULL WHERE conversation_id = 'legacy' AND seq = 4")
    problems = store.verify("legacy").problems
    assert (problems[0].seq, problems[0].kind) == (4, "unchained")


def test_a_missing_not_null_column_is_not_guessed(database_url: str):
    engine = make_engine(database_url)
    Table("things", MetaData(), Column("id", Integer, primary_key=True)).create(engine)
    wanted = Table("things", MetaData(), Column("id", Integer, primary_key=True), Column("n", Integer, nullable=False))
    with pytest.raises(RuntimeError, match=r"things\.n"):
        add_missing_columns(engine, [wanted])
