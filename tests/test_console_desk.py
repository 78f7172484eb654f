"""The agent console over real HTTP and WebSockets: queues by department, takeover, live messages both
ways, transfer, close and rating, masking and audit. (The browser walk is in test_escalation_browser.py.)"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from console.accounts import AccountStore
from tests.conftest import PASSWORD, ConsoleUser, LiveServer, console_server

pytestmark = pytest.mark.slow
ID_NUMBER = "110101199003071234"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with console_server(tmp_path_factory.mktemp("desk")) as live:
        accounts: AccountStore = live.app.state.console_auth.accounts  # type: ignore[attr-defined]
        accounts.create("wangfang", "王芳", PASSWORD, "agent", departments=["general", "hrss"])
        accounts.create("lilei", "李磊", PASSWORD, "agent", departments=["police"])
        accounts.create("zhaomin", "赵敏", PASSWORD, "supervisor")
        yield live


Agent = ConsoleUser


def citizen_socket(server: LiveServer) -> ClientConnection:
    return connect(server.base_url.replace("http://", "ws://") + "/ws/chat")


def frames_until(socket: ClientConnection, predicate, limit: int = 20) -> dict:
    for _ in range(limit):
        frame = json.loads(socket.recv(timeout=10))
        if predicate(frame):
            return frame
    raise AssertionError("expected frame did not arrive")


def escalate(server: LiveServer, socket: ClientConnection, text: str, kb_id: str | None) -> tuple[str, int]:
    """The citizen asks something, then the bot hands the conversation to a person."""
    socket.send(json.dumps({"text": text, "client_id": "c1"}))
    reply = frames_until(socket, lambda f: f["type"] == "reply")
    conversation_id = reply["conversation_id"]
    escalation = server.app.state.escalations.request(conversation_id, "requested", kb_id)  # type: ignore[attr-defined]
    return conversation_id, escalation.id


def test_takeover_live_messages_transfer_close_and_rating(server: LiveServer):
    wang, li = Agent(server, "wangfang"), Agent(server, "lilei")
    with citizen_socket(server) as citizen, wang.socket() as console:
        conversation_id, escalation_id = escalate(
            server, citizen, f"退休金怎么领 我身份证号{ID_NUMBER}", "retire.apply"
        )
        queued = frames_until(console, lambda f: f["type"] == "escalation")
        assert queued["escalation"]["id"] == escalation_id and queued["escalation"]["queue_id"] == "hrss"
        board = wang.get("/api/console/board").json()
        hrss = next(q for q in board["queues"] if q["id"] == "hrss")
        assert [i["id"] for i in hrss["waiting"]] == [escalation_id] and hrss["waiting"][0]["title"]

        assert wang.post(f"/api/console/escalations/{escalation_id}/accept").status_code == 200
        joined = frames_until(citizen, lambda f: f["type"] == "line" and f["line"].get("event") == "accept")
        assert "王芳" in joined["line"]["text"] and joined["line"]["event"] == "accept"
        console.send(json.dumps({"follow": escalation_id}))

        detail = wang.get(f"/api/console/escalations/{escalation_id}").json()
        citizen_line = next(line for line in detail["lines"] if line["role"] == "citizen")
        assert ID_NUMBER not in citizen_line["text"] and "110101" in citizen_line["text"]  # masked for an agent
        assert detail["match"]["kb_id"] == "retire.apply"

        sent = wang.post(
            f"/api/console/escalations/{escalation_id}/messages", {"text": "您好，我是王芳，请问您是哪一年退休？"}
        )
        assert sent.status_code == 200
        pushed = frames_until(citizen, lambda f: f["type"] == "line" and f["line"]["role"] == "agent")
        assert pushed["line"]["agent_name"] == "王芳" and "哪一年退休" in pushed["line"]["text"]

        citizen.send(json.dumps({"text": "今年三月", "conversation_id": conversation_id, "client_id": "c2"}))
        reply = frames_until(citizen, lambda f: f["type"] == "reply")
        assert reply["replies"] == [] and reply["handled_by"] == "agent"  # the bot keeps quiet
        heard = frames_until(console, lambda f: f["type"] == "line" and f["line"]["role"] == "citizen")
        assert heard["line"]["text"] == "今年三月"

        kb = wang.post(f"/api/console/escalations/{escalation_id}/messages", {"kb_id": "retire.apply"})
        assert kb.status_code == 200 and kb.json()["payload"]["rich"][0]["type"] == "kb_card"

        moved = wang.post(
            f"/api/console/escalations/{escalation_id}/transfer", {"queue_id": "police", "note": "还要问户口"}
        )
        assert moved.status_code == 200 and moved.json()["queue_id"] == "police"
        assert li.post(f"/api/console/escalations/{escalation_id}/accept").status_code == 200
        assert li.get(f"/api/console/escalations/{escalation_id}").json()["escalation"]["note"] == "还要问户口"
        closed = li.post(
            f"/api/console/escalations/{escalation_id}/close", {"summary": "已答复退休申领", "category": "政策咨询"}
        )
        assert closed.status_code == 200
        ended = frames_until(citizen, lambda f: f["type"] == "line" and f["line"].get("event") == "close")
        assert ended["line"]["rate"] is True

    rating = httpx.post(
        f"{server.base_url}/api/chat/{conversation_id}/rating",
        json={"escalation_id": escalation_id, "score": 5, "comment": "很耐心"},
    )
    assert rating.status_code == 200
    again = httpx.post(
        f"{server.base_url}/api/chat/{conversation_id}/rating", json={"escalation_id": escalation_id, "score": 1}
    )
    assert again.status_code == 409
    events = [
        line.payload["event"]
        for line in server.app.state.transcripts.lines(conversation_id)  # type: ignore[attr-defined]
        if line.role == "system"
    ]
    assert events == ["escalation", "accept", "transfer", "accept", "close", "rating"]


def test_agents_only_open_their_departments_queues(server: LiveServer):
    li, boss = Agent(server, "lilei"), Agent(server, "zhaomin")
    with citizen_socket(server) as citizen:
        _, escalation_id = escalate(server, citizen, "公积金怎么提取", "hpf.withdraw_rent")
    refused = li.get(f"/api/console/escalations/{escalation_id}")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "wrong_department"
    assert li.post(f"/api/console/escalations/{escalation_id}/accept").status_code == 403
    assert all(i["id"] != escalation_id for q in li.get("/api/console/board").json()["queues"] for i in q["waiting"])
    assert boss.get(f"/api/console/escalations/{escalation_id}").status_code == 200  # supervisors see every queue


def test_console_writes_need_the_sessions_csrf_token(server: LiveServer):
    wang = Agent(server, "wangfang")
    with citizen_socket(server) as citizen:
        _, escalation_id = escalate(server, citizen, "转人工", None)
    forged = wang.post(f"/api/console/escalations/{escalation_id}/accept", csrf="forged-token")
    assert forged.status_code == 403 and forged.json()["error"]["code"] == "csrf_failed"
    anonymous = httpx.post(f"{server.base_url}/api/console/escalations/{escalation_id}/accept")
    assert anonymous.status_code == 401


def test_supervisor_sees_pii_and_every_view_is_audited(server: LiveServer):
    boss = Agent(server, "zhaomin")
    with citizen_socket(server) as citizen:
        conversation_id, escalation_id = escalate(server, citizen, f"我的身份证{ID_NUMBER}丢了", None)
    lines = boss.get(f"/api/console/escalations/{escalation_id}").json()["lines"]
    assert any(ID_NUMBER in line["text"] for line in lines)
    audit = server.app.state.audit.entries(action="view", target=f"conversation:{conversation_id}")  # type: ignore[attr-defined]
    assert [(e.actor, e.role) for e in audit] == [("zhaomin", "supervisor")]


def test_console_page_needs_a_login(server: LiveServer):
    page = httpx.get(f"{server.base_url}/console", headers={"Accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"].startswith("/console/login")
    wang = Agent(server, "wangfang")
    html = wang.get("/console")
    assert html.status_code == 200 and "人工坐席工作台" in html.text
    assert re.search(r"<script src=\"/console/static/console.js\">", html.text)


def test_a_json_api_client_follows_the_agent_by_polling(server: LiveServer, tmp_path: Path):
    wang = Agent(server, "wangfang")
    first = httpx.post(f"{server.base_url}/api/chat", json={"text": "转人工"}).json()
    conversation_id = first["conversation_id"]
    escalation = server.app.state.escalations.request(conversation_id, "requested", None)  # type: ignore[attr-defined]
    wang.post(f"/api/console/escalations/{escalation.id}/accept")
    wang.post(f"/api/console/escalations/{escalation.id}/messages", {"text": "您好，请讲"})
    lines = httpx.get(f"{server.base_url}/api/chat/{conversation_id}/lines", params={"after": 0}).json()["lines"]
    assert [line["role"] for line in lines][-2:] == ["system", "agent"] and lines[-1]["text"] == "您好，请讲"
    assert "note" not in json.dumps(lines)
