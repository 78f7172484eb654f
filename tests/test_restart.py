"""Kill the app with conversations queued and one in progress, start it again: nothing is lost, and the
citizen's open chat page reconnects and keeps receiving the agent's messages."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from bench.chat_latency import spawn
from bot.transcripts import TranscriptStore
from console.accounts import AccountStore
from tests.conftest import PASSWORD, always_open, free_port, login
from zhixun.database import make_engine

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def test_a_killed_app_loses_no_queue_item_or_line_and_the_page_reconnects(browser, tmp_path: Path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    database = f"sqlite:///{tmp_path / 'zhixun.db'}"
    env = {
        "ZHIXUN_DATABASE_URL": database,
        "ZHIXUN_PORT": str(port),
        "ZHIXUN_PUBLIC_BASE_URL": base,
        "ZHIXUN_RASA__ENABLED": "false",
        "ZHIXUN_ESCALATION__QUEUES_FILE": str(always_open(tmp_path / "queues.yml")),
    }
    app = spawn(env)
    try:
        engine = make_engine(database)
        AccountStore(engine).create("wangfang", "王芳", PASSWORD, "agent", departments=["general"])
        waiting = [httpx.post(base + "/api/chat", json={"text": "转人工"}).json() for _ in range(3)]
        assert all(w["handled_by"] == "queue" for w in waiting)

        page = browser.new_context(locale="zh-CN").new_page()
        page.goto(base + "/")
        page.wait_for_selector("#status:text('在线')")
        page.fill("#input", "我要人工客服")
        page.click("#send")
        page.wait_for_selector(".msg.bot:has-text('已为您转接人工客服')", timeout=15_000)
        conversation_id = page.evaluate("sessionStorage.getItem('zhixun.conversation')")

        agent = httpx.Client(base_url=base, timeout=15)
        login(agent, "wangfang", PASSWORD)
        csrf = {"X-CSRF-Token": agent.get("/api/console/me").json()["csrf_token"]}
        general = next(q for q in agent.get("/api/console/board").json()["queues"] if q["id"] == "general")
        held = next(i for i in general["waiting"] if i["conversation_id"] == conversation_id)
        assert agent.post(f"/api/console/escalations/{held['id']}/accept", headers=csrf).status_code == 200
        agent.post(f"/api/console/escalations/{held['id']}/messages", json={"text": "您好，我是王芳"}, headers=csrf)
        page.wait_for_selector(".msg.agent:has-text('我是王芳')", timeout=15_000)

        transcripts = TranscriptStore(engine)
        before = {c: len(transcripts.lines(c)) for c in [conversation_id, *(w["conversation_id"] for w in waiting)]}
        app.send_signal(signal.SIGKILL)
        app.wait()
        page.wait_for_selector("#status:has-text('网络已断开')", timeout=15_000)

        app = spawn(env)
        page.wait_for_selector("#status:text('在线')", timeout=30_000)
        board = agent.get("/api/console/board").json()  # the session survived too: it is in the database
        still_waiting = {i["conversation_id"] for q in board["queues"] for i in q["waiting"]}
        assert still_waiting == {w["conversation_id"] for w in waiting}
        assert [i["id"] for i in board["mine"]] == [held["id"]]
        assert {c: len(transcripts.lines(c)) for c in before} == before

        agent.post(
            f"/api/console/escalations/{held['id']}/messages", json={"text": "刚才系统重启了，我们继续"}, headers=csrf
        )
        page.wait_for_selector(".msg.agent:has-text('我们继续')", timeout=15_000)
        assert transcripts.verify().ok
    finally:
        app.kill()
        app.wait()
