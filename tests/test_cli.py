"""`zhixun kb …` and `zhixun transcripts …` as an operator uses them."""

from __future__ import annotations

import datetime as dt
import json
import pwd
import subprocess
import sys
import tempfile
from os import getuid
from pathlib import Path

import pytest
import yaml
from sqlalchemy import text

from bot.audit import AuditLog
from bot.transcripts import TranscriptStore
from knowledge_base import files
from zhixun.database import make_engine

ZHIXUN = [sys.executable, "-m", "zhixun.cli"]


def zhixun(*args: str, db: Path | str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI on the SQLite file `db`, or on the database URL `db`."""
    url, home = (f"sqlite:///{db}", db.parent) if isinstance(db, Path) else (db, tempfile.gettempdir())
    env = {"ZHIXUN_DATABASE_URL": url, "PATH": "/usr/bin:/bin", "HOME": str(home), **(env or {})}
    return subprocess.run(
        [*ZHIXUN, *args], capture_output=True, text=True, env=env, timeout=120, cwd=Path(__file__).resolve().parents[1]
    )


def test_validate_whole_kb(tmp_path):
    result = zhixun("kb", "validate", db=tmp_path / "x.db")
    assert result.returncode == 0, result.stderr
    assert f"ok: {len(files.coverage_ids())} entries" in result.stdout


def test_validate_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yml"
    text = files.dump_entries([files.load_directory(require_coverage=False)[0]]).replace("count: 1", "count: 0", 1)
    bad.write_text(text, encoding="utf-8")
    result = zhixun("kb", "validate", str(bad), db=tmp_path / "x.db")
    assert result.returncode == 1
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "count: 0" in row)
    assert f"{bad}:{line}:" in result.stderr and "count" in result.stderr


def test_import_export_roundtrip_and_versioning(tmp_path):
    db = tmp_path / "kb.db"
    first = zhixun("kb", "import", "--author", "alice", db=db)
    assert first.returncode == 0, first.stderr
    shipped = files.load_directory(require_coverage=False)
    assert f"{len(shipped)} new" in first.stdout
    exported = tmp_path / "all.yml"
    assert zhixun("kb", "export", str(exported), db=db).returncode == 0
    entries = yaml.safe_load(exported.read_text(encoding="utf-8"))["entries"]
    assert {e["id"] for e in entries} == {e.id for e in shipped}

    one = next(e for e in entries if e["id"] == "passport.apply")
    one["hours"] = "工作日 8:30—17:30，周六上午9:00—12:00"
    changed = tmp_path / "change.yml"
    changed.write_text(yaml.safe_dump({"entries": [one]}, allow_unicode=True), encoding="utf-8")
    second = zhixun("kb", "import", str(changed), "--author", "bob", db=db)
    assert "0 new, 1 updated, 0 unchanged" in second.stdout, second.stderr


def test_import_of_a_bad_file_changes_nothing(tmp_path):
    db = tmp_path / "kb.db"
    zhixun("kb", "import", db=db)
    entry = files.load_directory(require_coverage=False)[0].model_dump(mode="json")
    entry["related"] = ["no.such_item"]
    entry["fees"] = "变了"
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump({"entries": [entry]}, allow_unicode=True), encoding="utf-8")
    result = zhixun("kb", "import", str(bad), db=db)
    assert result.returncode == 1 and "no.such_item" in result.stderr and "nothing was changed" in result.stderr
    exported = yaml.safe_load(zhixun("kb", "export", db=db).stdout)["entries"]
    assert next(e for e in exported if e["id"] == entry["id"])["fees"] != "变了"


def test_transcripts_export_is_jsonl(tmp_path):
    db = tmp_path / "t.db"
    store = TranscriptStore(make_engine(f"sqlite:///{db}"))
    store.create_tables()
    cid = store.open_conversation("web")
    store.append(cid, "web", "citizen", "身份证丢了怎么办")
    store.append(cid, "web", "bot", "【居民身份证挂失补领】…", kb_id="idcard.lost", band="answer")
    result = zhixun("transcripts", "export", db=db)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["seq"], r["role"], r["kb_id"]) for r in rows] == [(1, "citizen", None), (2, "bot", "idcard.lost")]
    assert zhixun("transcripts", "export", "--since", "2999-01-01", db=db).stdout == ""


@pytest.fixture
def stores(database_url: str) -> tuple[TranscriptStore, AuditLog]:
    engine = make_engine(database_url)
    transcripts, audit = TranscriptStore(engine), AuditLog(engine)
    transcripts.create_tables()
    audit.create_tables()
    return transcripts, audit


def chat(store: TranscriptStore) -> str:
    cid = store.open_conversation("web")
    store.append(cid, "web", "citizen", "我的手机号13812345678，预约改到周五")
    store.append(cid, "web", "bot", "已为您改约到周五上午，预约码482913。", kb_id="passport.renew", band="answer")
    store.append(cid, "web", "citizen", "谢谢")
    return cid


def test_transcripts_export_is_audited_and_can_mask(database_url: str, stores):
    store, audit = stores
    chat(store)
    result = zhixun("transcripts", "export", "--mask", "--actor", "alice", db=database_url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[0])["text"] == "我的手机号138****5678，预约改到周五"
    assert "13812345678" in zhixun("transcripts", "export", "--since", "2026-01-01", db=database_url).stdout
    first, second = audit.entries(action="export")
    assert (first.actor, first.role, first.target) == ("alice", "operator", "transcripts")
    assert first.detail == {"since": None, "until": None, "lines": 3, "masked": True, "out": "-"}
    assert second.actor == pwd.getpwuid(getuid()).pw_name and second.detail["since"].startswith("2026-01-01")
    assert first.client.startswith("cli:")


def test_transcripts_verify_exit_codes(database_url: str, stores):
    store, _ = stores
    good, bad = chat(store), chat(store)
    result = zhixun("transcripts", "verify", db=database_url)
    assert result.returncode == 0, result.stderr
    assert "ok: 2 conversation(s), 6 line(s)" in result.stdout

    with store.engine.begin() as conn:
        conn.execute(
            text("UPDATE transcript_messages SET text = '改过' WHERE conversation_id = :c AND seq = 2"), {"c": bad}
        )
    result = zhixun("transcripts", "verify", db=database_url)
    assert result.returncode == 1
    assert f"conversation {bad} seq 2: edited" in result.stderr
    assert f"first bad entry: conversation {bad} seq 2 (edited)" in result.stderr
    assert zhixun("transcripts", "verify", "--conversation", good, db=database_url).returncode == 0
    assert zhixun("transcripts", "verify", "--conversation", bad, db=database_url).returncode == 1
    unknown = zhixun("transcripts", "verify", "--conversation", "0" * 32, db=database_url)
    assert unknown.returncode == 1 and "no such conversation" in unknown.stderr


def test_transcripts_purge_uses_the_retention_setting_and_keeps_the_audit_log(database_url: str, stores):
    store, audit = stores
    old, older, recent = chat(store), chat(store), chat(store)
    now = dt.datetime.now(dt.UTC)
    with store.engine.begin() as conn:
        for cid, days in ((old, 40), (older, 400)):
            conn.execute(
                text("UPDATE conversations SET last_active_at = :t WHERE id = :c"),
                {"t": now - dt.timedelta(days=days), "c": cid},
            )
    audit.record("admin-token", "view", f"conversation:{old}", role="admin")

    by_date = zhixun(
        "transcripts", "purge", "--before", (now - dt.timedelta(days=365)).date().isoformat(), db=database_url
    )
    assert by_date.returncode == 0, by_date.stderr
    assert "purged 1 conversation(s) (3 line(s))" in by_date.stdout
    assert [store.exists(c) for c in (old, older, recent)] == [True, False, True]

    by_setting = zhixun("transcripts", "purge", db=database_url, env={"ZHIXUN_TRANSCRIPTS__RETENTION_DAYS": "30"})
    assert by_setting.returncode == 0, by_setting.stderr
    assert [store.exists(c) for c in (old, older, recent)] == [False, False, True]
    assert len(store.lines(recent)) == 3 and store.verify().ok

    view, *purges = audit.entries()
    assert view.target == f"conversation:{old}"
    assert [(p.action, p.detail["conversations"], p.detail["lines"]) for p in purges] == [
        ("purge", 1, 3),
        ("purge", 1, 3),
    ]
