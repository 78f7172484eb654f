"""Video callback over real HTTP and WebSockets: the invitation in chat and in the outbox, single-use links
(reused, expired, other conversation), signalling socket auth, and the recording upload's refusals,
finalisation and audited playback. (The real call in Chromium is in test_video_call.py.)"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from bot.notifier import OutboxRow
from bot.video import VideoCallRow
from console.accounts import AccountStore
from tests.conftest import PASSWORD, LiveServer, console_server
from tests.test_console_desk import Agent, citizen_socket, escalate, frames_until

pytestmark = pytest.mark.slow
CHUNK_LIMIT = 256 * 1024
PHONE = "13800138000"


@contextmanager
def video_server(tmp: Path, **video: object) -> Iterator[LiveServer]:
    settings = {"recordings_dir": tmp / "recordings", "max_chunk_bytes": CHUNK_LIMIT, "sms_enabled": True, **video}
    with console_server(tmp, video=settings) as live:
        accounts: AccountStore = live.app.state.console_auth.accounts  # type: ignore[attr-defined]
        accounts.create("wangfang", "王芳", PASSWORD, "agent", departments=["general", "hrss"], capacity=10)
        accounts.create("lilei", "李磊", PASSWORD, "agent", departments=["police"])
        yield live


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with video_server(tmp_path_factory.mktemp("video")) as live:
        yield live


@pytest.fixture(scope="module")
def wang(server: LiveServer) -> Agent:
    return Agent(server, "wangfang")


def held_conversation(server: LiveServer, wang: Agent, text: str = "退休金怎么领") -> tuple[str, int]:
    """A citizen's conversation that 王芳 has taken over."""
    with citizen_socket(server) as citizen:
        conversation_id, escalation_id = escalate(server, citizen, text, "retire.apply")
    assert wang.post(f"/api/console/escalations/{escalation_id}/accept").status_code == 200
    return conversation_id, escalation_id


def invite(wang: Agent, escalation_id: int, **body: object) -> tuple[dict, str]:
    """Invite; returns the API's answer and the link's token (from the transcript line the citizen got)."""
    response = wang.post(f"/api/console/escalations/{escalation_id}/video", body)
    assert response.status_code == 200, response.text
    data = response.json()
    video = wang.server.app.state.video  # type: ignore[attr-defined]
    line = next(
        line
        for line in reversed(video.transcripts.lines(data["call"]["conversation_id"]))
        if (line.payload or {}).get("event") == "video_invite"
    )
    url = line.payload["rich"][0]["buttons"][0]["url"]
    assert url in line.text
    return data, url.rsplit("/", 1)[1]


def engine(server: LiveServer):
    return server.app.state.video.engine  # type: ignore[attr-defined]


def events(server: LiveServer, conversation_id: str) -> list[dict]:
    lines = server.app.state.transcripts.lines(conversation_id)  # type: ignore[attr-defined]
    return [line.payload for line in lines if isinstance(line.payload, dict) and "call_id" in line.payload]


def test_invitation_is_pushed_to_the_chat_and_queued_for_sms(server: LiveServer, wang: Agent):
    with citizen_socket(server) as citizen:
        conversation_id, escalation_id = escalate(server, citizen, "退休金怎么领", "retire.apply")
        assert wang.post(f"/api/console/escalations/{escalation_id}/accept").status_code == 200
        response = wang.post(f"/api/console/escalations/{escalation_id}/video", {"phone": PHONE})
        assert response.status_code == 200, response.text
        data = response.json()
        assert data["notified"] == ["sms"] and data["socket"] == f"/console/video/ws/{data['call']['id']}"
        pushed = frames_until(citizen, lambda f: f["type"] == "line" and f["line"].get("event") == "video_invite")
    line = pushed["line"]
    assert line["role"] == "agent" and "视频通话" in line["text"] and "15分钟" in line["text"]
    button = line["rich"][0]["buttons"][0]
    assert button["title"] == "进入视频通话" and button["url"].startswith(server.base_url + "/video/")
    assert button["url"] in line["text"]
    token = button["url"].rsplit("/", 1)[1]
    with Session(engine(server)) as session:
        row = session.scalar(select(VideoCallRow).where(VideoCallRow.id == data["call"]["id"]))
        assert row is not None and row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert row.conversation_id == conversation_id and row.used_at is None
        assert dt.timedelta(minutes=14) < row.expires_at - row.created_at <= dt.timedelta(minutes=15)
        outbox = session.scalars(select(OutboxRow).where(OutboxRow.to == PHONE)).all()
    assert [(o.channel, o.template, o.status) for o in outbox] == [("sms", "video_invite", "pending")]
    assert outbox[0].params["url"] == button["url"] and outbox[0].params["agent_name"] == "王芳"

    lilei = Agent(server, "lilei")  # not holding it: may not invite
    refused = lilei.post(f"/api/console/escalations/{escalation_id}/video")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "not_yours"


def test_link_opens_once_after_consent_and_only_for_its_conversation(server: LiveServer, wang: Agent):
    conversation_id, escalation_id = held_conversation(server, wang)
    other_conversation, _ = held_conversation(server, wang, "社保卡丢了怎么补")
    data, token = invite(wang, escalation_id)

    page = httpx.get(f"{server.base_url}/video/{token}", params={"c": conversation_id})
    assert page.status_code == 200 and "本次视频通话将被录音录像" in page.text and "同意并开始" in page.text
    assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"
    assert httpx.get(f"{server.base_url}/video/{token}").status_code == 200  # opening changes nothing

    wrong = httpx.get(f"{server.base_url}/video/{token}", params={"c": other_conversation})
    assert wrong.status_code == 403 and "不属于您当前的咨询会话" in wrong.text
    claim = httpx.post(
        f"{server.base_url}/api/video/claim", json={"token": token, "conversation_id": other_conversation}
    )
    assert claim.status_code == 403 and claim.json()["error"]["code"] == "wrong_conversation"

    claim = httpx.post(f"{server.base_url}/api/video/claim", json={"token": token, "conversation_id": conversation_id})
    assert claim.status_code == 200, claim.text
    assert claim.json()["call_id"] == data["call"]["id"] and claim.json()["key"] and claim.json()["ice_servers"] == []
    assert [e["event"] for e in events(server, conversation_id)] == ["video_invite", "video_consent"]

    again = httpx.get(f"{server.base_url}/video/{token}", params={"c": conversation_id})
    assert again.status_code == 410 and "已经使用过" in again.text and 'data-code="link_used"' in again.text
    twice = httpx.post(f"{server.base_url}/api/video/claim", json={"token": token})
    assert twice.status_code == 410 and twice.json()["error"]["code"] == "link_used"
    unknown = httpx.get(f"{server.base_url}/video/{'x' * 43}")
    assert unknown.status_code == 404 and "链接无效" in unknown.text


def test_expired_link_and_a_superseded_one_are_refused(server: LiveServer, wang: Agent):
    _, escalation_id = held_conversation(server, wang)
    data, token = invite(wang, escalation_id)
    with Session(engine(server)) as session, session.begin():
        session.execute(
            update(VideoCallRow)
            .where(VideoCallRow.id == data["call"]["id"])
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    page = httpx.get(f"{server.base_url}/video/{token}")
    assert page.status_code == 410 and "已过期" in page.text
    claim = httpx.post(f"{server.base_url}/api/video/claim", json={"token": token})
    assert claim.status_code == 410 and claim.json()["error"]["code"] == "link_expired"

    _, first = invite(wang, escalation_id)
    _, second = invite(wang, escalation_id)  # a new invitation ends the unused one
    assert httpx.get(f"{server.base_url}/video/{first}").status_code == 410
    assert httpx.get(f"{server.base_url}/video/{second}").status_code == 200


def _refused(url: str, **headers: str) -> bool:
    try:
        with connect(url, additional_headers=headers or None) as socket:
            socket.recv(timeout=5)
    except ConnectionClosed as closed:
        return closed.rcvd is not None and closed.rcvd.code == 1008
    except Exception as error:  # the server may refuse the handshake outright
        return "403" in str(error) or "1008" in str(error)
    return False


def test_signalling_sockets_only_for_the_two_parties(server: LiveServer, wang: Agent):
    _, escalation_id = held_conversation(server, wang)
    _, other_escalation = held_conversation(server, wang)
    data, token = invite(wang, escalation_id)
    other, other_token = invite(wang, other_escalation)
    call_id = data["call"]["id"]
    key = httpx.post(f"{server.base_url}/api/video/claim", json={"token": token}).json()["key"]
    other_key = httpx.post(f"{server.base_url}/api/video/claim", json={"token": other_token}).json()["key"]
    ws = server.base_url.replace("http://", "ws://")

    assert _refused(f"{ws}/ws/video/{call_id}?key=wrong")
    assert _refused(f"{ws}/ws/video/{call_id}?key={token}")  # the link's token is no key
    assert _refused(f"{ws}/ws/video/{call_id}?key={other_key}")  # another conversation's call
    assert _refused(f"{ws}/console/video/ws/{call_id}", Origin=server.base_url)  # no session
    lilei = Agent(server, "lilei")
    cookie = "; ".join(f"{k}={v}" for k, v in lilei.http.cookies.items())
    assert _refused(f"{ws}/console/video/ws/{call_id}", Cookie=cookie, Origin=server.base_url)

    cookie = "; ".join(f"{k}={v}" for k, v in wang.http.cookies.items())
    headers = {"Cookie": cookie, "Origin": server.base_url}
    with (
        connect(f"{ws}/console/video/ws/{call_id}", additional_headers=headers) as agent,
        connect(f"{ws}/ws/video/{call_id}?key={key}") as citizen,  # after the agent: the agent hears its hello
    ):
        hello = json.loads(agent.recv(timeout=5))
        assert hello == {"type": "hello", "from": "citizen"}
        agent.send(json.dumps({"type": "offer", "data": {"type": "offer", "sdp": "v=0"}}))
        agent.send("not json")  # ignored
        offer = json.loads(citizen.recv(timeout=5))
        assert offer == {"type": "offer", "from": "agent", "data": {"type": "offer", "sdp": "v=0"}}
        citizen.send(json.dumps({"type": "answer", "data": {"type": "answer", "sdp": "v=0"}}))
        assert json.loads(agent.recv(timeout=5))["type"] == "answer"
        assert wang.post(f"/api/console/video/{call_id}/end").status_code == 200
        assert json.loads(citizen.recv(timeout=5)) == {"type": "hangup", "from": "server"}
    assert _refused(f"{ws}/ws/video/{call_id}?key={key}")  # the call has ended
    assert other["call"]["id"] != call_id


def test_recording_upload_refusals_finalisation_and_audited_playback(server: LiveServer, wang: Agent):
    conversation_id, escalation_id = held_conversation(server, wang)
    data, token = invite(wang, escalation_id)
    call_id = data["call"]["id"]
    chunks = f"/api/console/video/{call_id}/chunks"
    webm = {"Content-Type": "video/webm;codecs=vp8,opus", "X-CSRF-Token": wang.csrf}

    early = wang.http.post(chunks, params={"seq": 0}, content=b"x" * 10, headers=webm)
    assert early.status_code == 409 and early.json()["error"]["code"] == "not_connected"
    assert httpx.post(f"{server.base_url}/api/video/claim", json={"token": token}).status_code == 200
    assert wang.post(f"/api/console/video/{call_id}/start").status_code == 200

    anonymous = httpx.post(f"{server.base_url}{chunks}", params={"seq": 0}, content=b"x", headers=webm)
    assert anonymous.status_code == 401
    no_csrf = wang.http.post(chunks, params={"seq": 0}, content=b"x", headers={"Content-Type": "video/webm"})
    assert no_csrf.status_code == 403 and no_csrf.json()["error"]["code"] == "csrf_failed"
    wrong_type = wang.http.post(chunks, params={"seq": 0}, content=b"x", headers={**webm, "Content-Type": "text/html"})
    assert wrong_type.status_code == 415 and wrong_type.json()["error"]["code"] == "unsupported_type"
    oversize = wang.http.post(chunks, params={"seq": 0}, content=b"x" * (CHUNK_LIMIT + 1), headers=webm)
    assert oversize.status_code == 413 and oversize.json()["error"]["code"] == "chunk_too_large"
    huge = wang.http.post(chunks, params={"seq": 0}, content=b"x" * (3 * CHUNK_LIMIT), headers=webm)
    assert huge.status_code == 413
    lilei = Agent(server, "lilei")
    foreign = lilei.http.post(chunks, params={"seq": 0}, content=b"x", headers={**webm, "X-CSRF-Token": lilei.csrf})
    assert foreign.status_code == 403 and foreign.json()["error"]["code"] == "not_your_call"

    parts = [b"\x1a\x45\xdf\xa3" + bytes(range(256)) * 100, b"second" * 1000]
    assert wang.http.post(chunks, params={"seq": 1}, content=parts[1], headers=webm).status_code == 409  # a gap
    for seq, part in enumerate(parts):
        answer = wang.http.post(chunks, params={"seq": seq}, content=part, headers=webm)
        assert answer.status_code == 200, answer.text
    retry = wang.http.post(chunks, params={"seq": 1}, content=parts[1], headers=webm)  # a lost answer, re-sent
    assert retry.status_code == 200 and retry.json() == {"next_seq": 2, "bytes": sum(map(len, parts))}

    ended = wang.post(f"/api/console/video/{call_id}/end", {"duration_s": 2.5})
    assert ended.status_code == 200
    whole = b"".join(parts)
    recording = next(e for e in events(server, conversation_id) if e["event"] == "recording")
    assert recording["call_id"] == call_id and recording["file"] == f"{call_id}.webm"
    assert recording["bytes"] == len(whole) and recording["duration_s"] == 2.5
    assert recording["sha256"] == hashlib.sha256(whole).hexdigest()
    assert [e["event"] for e in events(server, conversation_id)][-3:] == ["video_start", "video_stop", "recording"]
    stored = Path(server.settings.video.recordings_dir) / recording["file"]
    assert stored.read_bytes() == whole
    late = wang.http.post(chunks, params={"seq": 2}, content=b"x", headers=webm)
    assert late.status_code == 409 and late.json()["error"]["code"] == "call_ended"
    assert wang.post(f"/api/console/video/{call_id}/end").json()["recording_sha256"] == recording["sha256"]

    played = wang.get(f"/api/console/video/{call_id}/recording")
    assert played.status_code == 200 and played.content == whole and played.headers["content-type"] == "video/webm"
    assert lilei.get(f"/api/console/video/{call_id}/recording").status_code == 403  # not his department
    assert httpx.get(f"{server.base_url}/api/console/video/{call_id}/recording").status_code == 401
    audit = server.app.state.audit.entries(action="view", target=f"recording:{call_id}")  # type: ignore[attr-defined]
    assert [(a.actor, a.detail["sha256"]) for a in audit] == [("wangfang", recording["sha256"])]
    listed = wang.get(f"/api/console/escalations/{escalation_id}/video").json()["calls"]
    assert listed[-1]["recording_url"] == f"/api/console/video/{call_id}/recording"


def test_an_abandoned_call_is_ended_and_its_recording_kept(server: LiveServer, wang: Agent):
    """The agent's browser died mid-call: the sweep ends the call after a quiet spell and attaches what
    was recorded; a fresh call and an unexpired invitation are left alone."""
    video = server.app.state.video  # type: ignore[attr-defined]
    conversation_id, escalation_id = held_conversation(server, wang)
    data, token = invite(wang, escalation_id)
    call_id = data["call"]["id"]
    assert httpx.post(f"{server.base_url}/api/video/claim", json={"token": token}).status_code == 200
    assert wang.post(f"/api/console/video/{call_id}/start").status_code == 200
    part = b"\x1a\x45\xdf\xa3" + b"abandoned" * 500
    headers = {"Content-Type": "video/webm", "X-CSRF-Token": wang.csrf}
    chunk = wang.http.post(f"/api/console/video/{call_id}/chunks", params={"seq": 0}, content=part, headers=headers)
    assert chunk.status_code == 200
    _, other_escalation = held_conversation(server, wang, "养老金怎么领")
    pending, _ = invite(wang, other_escalation)  # never opened, not expired yet

    swept = [c.id for c in video.sweep()]  # other tests' stale calls may go too
    assert call_id not in swept and pending["call"]["id"] not in swept  # the recorder wrote a moment ago
    quiet = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=6)).timestamp()
    os.utime(video._partial(f"{call_id}.webm"), (quiet, quiet))
    with Session(engine(server)) as session, session.begin():
        session.execute(
            update(VideoCallRow)
            .where(VideoCallRow.id == call_id)
            .values(started_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=7))
        )
    assert [c.id for c in video.sweep()] == [call_id]  # the others were swept above
    recording = next(e for e in events(server, conversation_id) if e["event"] == "recording")
    assert recording["bytes"] == len(part) and recording["sha256"] == hashlib.sha256(part).hexdigest()
    assert video.get(pending["call"]["id"]).ended_at is None
    assert call_id not in [c.id for c in video.sweep()]  # once
