"""`zhixun kb …` and `zhixun transcripts export` as an operator uses them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from knowledge_base import files

ZHIXUN = [sys.executable, "-m", "zhixun.cli"]


def zhixun(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    env = {"ZHIXUN_DATABASE_URL": f"sqlite:///{db}", "PATH": "/usr/bin:/bin", "HOME": str(db.parent)}
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
    from bot.transcripts import TranscriptStore
    from zhixun.database import make_engine

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
