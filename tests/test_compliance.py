"""Compliance: personal data masked in exports, an append-only audit log, retention purge, per-conversation exports."""

from __future__ import annotations

import datetime as dt
import io

import pypdf
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from bot import transcript_export
from bot.audit import AuditLog
from bot.privacy import mask_text, mask_value
from bot.transcripts import TranscriptStore
from connectors.web import errors
from console.routes import router as console_router
from tests.conftest import ADMIN_TOKEN
from zhixun.database import make_engine
from zhixun.settings import Settings, TranscriptSettings

CITIZEN = "我叫张三，身份证号110101199003071234，手机13812345678，帮我查一下预约"
MASKED = "我叫张三，身份证号110101********1234，手机138****5678，帮我查一下预约"


@pytest.mark.parametrize(
    ("said", "masked"),
    [
        (CITIZEN, MASKED),
        ("身份证是11010519491231002X，补办要多久", "身份证是110105********002X，补办要多久"),
        ("尾号小写x：11010519491231002x。", "尾号小写x：110105********002x。"),
        ("老身份证110105491231002还能用吗", "老身份证110105*****1002还能用吗"),
        ("联系电话 138 1234 5678，谢谢", "联系电话 138 **** 5678，谢谢"),
        ("打我电话138-1234-5678或+86 13912345678", "打我电话138-****-5678或+86 139****5678"),
        ("+8613812345678", "+86138****5678"),
        ("手机号１３８１２３４５６７８（全角）", "手机号１３８****５６７８（全角）"),
        ("单位座机010-12345678转分机", "单位座机010-****5678转分机"),
        ("打0755-1234567或（021）6123 4567", "打0755-***4567或（021）**** 4567"),
        ("号码19912345678和15000000000都是我的", "号码199****5678和150****0000都是我的"),
    ],
)
def test_personal_numbers_are_masked(said: str, masked: str):
    assert mask_text(said) == masked


@pytest.mark.parametrize(
    "said",
    [
        "我预约的是2026年12月8日，也就是20261208上午",
        "预约码是482913，取件码 123456",
        "公积金提取了12000元，还剩3456.78元",
        "银行卡号6222021234567890123，工资卡",  # 19 digits: no part of it is masked
        "卡号 6222 0212 3456 7890 123",
        "快递单号123456789012345678查不到",  # 18 digits but no plausible birth date
        "营业执照注册号110108012345678",  # 15 digits, not a date either
        "请问passport.renew和hukou.newborn有什么区别",
        "政务服务热线12345，或者400-810-1234",
        "办理时间09:00-12:00，13:30-17:00，2026-12-08起",
        "出生于1990年3月7日，邮编100101",
    ],
)
def test_other_numbers_are_left_alone(said: str):
    assert mask_text(said) == said


def test_payloads_are_masked_all_the_way_down():
    payload = {
        "button": '/inform{"phone":"13812345678"}',
        "replies": [{"type": "text", "text": "已为您登记电话010-12345678"}, {"score": 0.93, "count": 3}],
        "phone": 13812345678,
        "ok": True,
    }
    assert mask_value(payload) == {
        "button": '/inform{"phone":"138****5678"}',
        "replies": [{"type": "text", "text": "已为您登记电话010-****5678"}, {"score": 0.93, "count": 3}],
        "phone": "138****5678",
        "ok": True,
    }


@pytest.fixture
def stores(database_url: str) -> tuple[TranscriptStore, AuditLog]:
    engine = make_engine(database_url)
    transcripts, audit = TranscriptStore(engine), AuditLog(engine)
    transcripts.create_tables()
    audit.create_tables()
    return transcripts, audit


def chat(store: TranscriptStore, citizen: str = CITIZEN) -> str:
    cid = store.open_conversation("web", sender="203.0.113.7")
    store.append(cid, "web", "citizen", citizen, payload={"button": '/inform{"phone":"13812345678"}'})
    store.append(
        cid, "web", "bot", "已为您查到预约：12月8日上午，预约码482913。", kb_id="passport.renew", band="answer"
    )
    return cid


def test_masked_line_is_a_copy(stores):
    store, _ = stores
    line = store.lines(chat(store))[0]
    copy = line.masked()
    assert copy.text == MASKED and copy.payload == {"button": '/inform{"phone":"138****5678"}'}
    assert line.text == CITIZEN and copy.hash == line.hash


def test_audit_log_records_and_is_append_only(stores):
    _, audit = stores
    audit.record("admin-token", "view", "conversation:abc", role="admin", client="203.0.113.9")
    audit.record("alice", "export", "transcripts", role="operator", detail={"lines": 2, "masked": True})
    (view,) = audit.entries(action="view")
    assert (view.actor, view.role, view.target, view.client) == (
        "admin-token",
        "admin",
        "conversation:abc",
        "203.0.113.9",
    )
    assert view.at.tzinfo is not None and view.to_json()["at"].endswith("+00:00")
    assert audit.entries(target="transcripts")[0].detail == {"lines": 2, "masked": True}
    for statement in ("UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"), audit.engine.begin() as conn:
            conn.execute(text(statement))
    assert [e.actor for e in audit.entries()] == ["admin-token", "alice"]


def test_purge_removes_old_conversations_only_and_keeps_the_audit_log(stores):
    store, audit = stores
    old, recent = chat(store), chat(store)
    store.append(old, "web", "citizen", "还在吗")
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=4 * 365)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE conversations SET last_active_at = :t WHERE id = :c"), {"t": long_ago, "c": old})
    audit.record("admin-token", "view", f"conversation:{old}", role="admin")

    retention = dt.timedelta(days=TranscriptSettings().retention_days)
    assert retention == dt.timedelta(days=3 * 365)
    purged = store.purge(dt.datetime.now(dt.UTC) - retention, audit, "alice", client="cli:host")
    assert (purged.conversations, purged.lines) == (1, 3)
    assert not store.exists(old) and store.lines(old) == []
    assert store.exists(recent) and len(store.lines(recent)) == 2
    assert store.verify().ok
    view, purge = audit.entries()
    assert view.target == f"conversation:{old}"
    assert (purge.actor, purge.action, purge.target, purge.client) == ("alice", "purge", "transcripts", "cli:host")
    assert purge.detail["conversations"] == 1 and purge.detail["lines"] == 3


def test_json_export_is_masked_by_default_and_carries_the_check(stores):
    store, _ = stores
    cid = chat(store)
    masked = transcript_export.as_json(transcript_export.collect(store, cid))
    assert masked["masked"] is True and masked["conversation"]["sender"] == "***"
    assert masked["lines"][0]["text"] == MASKED
    assert masked["verification"] == {"ok": True, "lines": 2, "legacy_lines": 0, "problems": []}
    plain = transcript_export.as_json(transcript_export.collect(store, cid, mask=False))
    assert plain["lines"][0]["text"] == CITIZEN and plain["conversation"]["sender"] == "203.0.113.7"

    with store.engine.begin() as conn:
        conn.execute(
            text("UPDATE transcript_messages SET text = '改过' WHERE conversation_id = :c AND seq = 2"), {"c": cid}
        )
    tampered = transcript_export.as_json(transcript_export.collect(store, cid))["verification"]
    assert tampered["ok"] is False and tampered["problems"][0]["seq"] == 2
    with pytest.raises(KeyError):
        transcript_export.collect(store, "0" * 32)


def test_html_export_escapes_what_people_typed(stores):
    store, _ = stores
    cid = chat(store, citizen="<script>alert('x')</script>我的电话13812345678")
    page = transcript_export.as_html(transcript_export.collect(store, cid))
    assert "<script>" not in page and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert "138****5678" in page and "13812345678" not in page
    for heading in ("会话记录", "完整性校验：通过", "市民", "智能助手", "事项：passport.renew", "已对身份证号"):
        assert heading in page


def test_pdf_export_contains_the_masked_lines(stores):
    store, _ = stores
    cid = chat(store)
    pdf = transcript_export.as_pdf(transcript_export.collect(store, cid))
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    content = "".join(page.extract_text() for page in reader.pages).replace("\n", "").replace(" ", "")
    assert MASKED.replace(" ", "") in content and "13812345678" not in content
    assert "会话记录" in content and "预约码482913" in content and "完整性校验：通过" in content


@pytest.fixture
def admin(stores) -> tuple[TestClient, TranscriptStore, AuditLog]:
    store, audit = stores
    app = FastAPI()
    app.state.settings = Settings(admin_token=ADMIN_TOKEN)
    app.state.transcripts, app.state.audit = store, audit
    errors.install(app)
    app.include_router(console_router)
    return TestClient(app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}), store, audit


def test_admin_view_is_unmasked_and_audited(admin):
    client, store, audit = admin
    cid = chat(store)
    body = client.get(f"/api/conversations/{cid}").json()
    assert body["lines"][0]["text"] == CITIZEN
    (view,) = audit.entries(action="view")
    assert (view.actor, view.role, view.target, view.client) == (
        "admin-token",
        "admin",
        f"conversation:{cid}",
        "testclient",
    )
    assert client.get(f"/api/conversations/{cid}", headers={"Authorization": ""}).status_code == 401
    assert client.get(f"/api/conversations/{'0' * 32}").status_code == 404
    assert len(audit.entries()) == 1  # refused and unknown requests read nothing


def test_admin_exports_are_audited(admin):
    client, store, audit = admin
    cid = chat(store)
    as_json = client.get(f"/api/conversations/{cid}/export.json")
    assert as_json.json()["lines"][0]["text"] == MASKED
    assert client.get(f"/api/conversations/{cid}/export.json?mask=false").json()["lines"][0]["text"] == CITIZEN
    page = client.get(f"/api/conversations/{cid}/export.html")
    assert page.headers["content-type"].startswith("text/html") and "138****5678" in page.text
    pdf = client.get(f"/api/conversations/{cid}/export.pdf")
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content.startswith(b"%PDF")
    assert client.get(f"/api/conversations/{cid}/export.docx").status_code == 422
    exports = [(e.target, e.detail) for e in audit.entries(action="export")]
    assert exports == [
        (f"conversation:{cid}", {"format": "json", "masked": True}),
        (f"conversation:{cid}", {"format": "json", "masked": False}),
        (f"conversation:{cid}", {"format": "html", "masked": True}),
        (f"conversation:{cid}", {"format": "pdf", "masked": True}),
    ]
