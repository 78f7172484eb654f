"""A video callback in real browsers: Debian's chromium with fake camera and microphone, the citizen on a
phone-sized page and the agent in the console, each in its own browser context. The agent invites from the
console, the citizen opens the link pushed into the chat, consents, the call connects both ways, the agent
hangs up, and the transcript carries the recording: the file exists, is not empty, and its checksum holds."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CHROMIUM, CHROMIUM_ARGS, PASSWORD, LiveServer
from tests.test_video_refusals import video_server

pytestmark = [pytest.mark.slow, pytest.mark.browser]
WAIT = 20_000
MEDIA_ARGS = [
    "--use-fake-ui-for-media-stream",  # grant camera and microphone without asking
    "--use-fake-device-for-media-stream",  # a test pattern and a beep instead of real devices
    "--autoplay-policy=no-user-gesture-required",
    "--disable-features=WebRtcHideLocalIpsWithMdns",  # plain host candidates: no mDNS resolver in CI
    "--allow-loopback-in-peer-connection",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with video_server(tmp_path_factory.mktemp("video-call"), max_chunk_bytes=8 * 1024 * 1024) as live:
        yield live


@pytest.fixture(scope="module")
def media_browser() -> Iterator[object]:
    """Chromium with fake camera and microphone (the shared `browser` has none)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS + MEDIA_ARGS)
        yield browser
        browser.close()


def test_video_call_connects_and_the_recording_is_attached_to_the_transcript(media_browser, server: LiveServer):
    app, browser = server.app, media_browser
    citizen_context = browser.new_context(  # type: ignore[attr-defined]
        locale="zh-CN", viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    citizen_context.grant_permissions(["camera", "microphone"], origin=server.base_url)
    citizen = citizen_context.new_page()
    citizen.goto(server.base_url + "/")
    citizen.wait_for_selector("#status:text('在线')", timeout=WAIT)
    citizen.fill("#input", "退休金怎么领")
    citizen.click("#send")
    citizen.locator("article.card").first.wait_for(timeout=WAIT)
    conversation_id = citizen.evaluate("sessionStorage.getItem('zhixun.conversation')")
    escalation = app.state.escalations.request(conversation_id, "requested", "retire.apply")  # type: ignore[attr-defined]

    agent_context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    agent_context.grant_permissions(["camera", "microphone"], origin=server.base_url)
    agent = agent_context.new_page()
    agent.goto(server.base_url + "/console/login")
    agent.fill("input[name=username]", "wangfang")
    agent.fill("input[name=password]", PASSWORD)
    agent.click("button[type=submit]")
    agent.wait_for_selector("#live:text('实时连接正常')", timeout=WAIT)
    item = agent.locator(f"[data-escalation-id='{escalation.id}']").first
    item.wait_for(timeout=WAIT)
    item.locator("button.accept").click()
    agent.wait_for_selector("#transcript li.citizen:has-text('退休金怎么领')", timeout=WAIT)

    agent.click("#video-call")
    agent.wait_for_selector("#video-panel[data-state=waiting]", timeout=WAIT)
    link = citizen.locator("a.choice-link:has-text('进入视频通话')")
    link.wait_for(timeout=WAIT)
    assert f"c={conversation_id}" in (link.get_attribute("href") or "")
    with citizen_context.expect_page() as opened:
        link.click()
    video = opened.value
    video.wait_for_selector("text=本次视频通话将被录音录像", timeout=WAIT)
    video.click("#agree")

    connected = (
        "window.__zhixunVideo && window.__zhixunVideo.pc && window.__zhixunVideo.pc.connectionState === 'connected'"
    )
    agent.wait_for_function(connected, timeout=WAIT)
    video.wait_for_function(connected, timeout=WAIT)
    frames = "(id) => { const v = document.getElementById(id); return v.videoWidth > 0 && v.currentTime > 0.5; }"
    agent.wait_for_function(frames, arg="video-remote", timeout=WAIT)  # the citizen's camera, on the console
    video.wait_for_function(frames, arg="remote", timeout=WAIT)  # the agent's camera, on the phone
    agent.wait_for_selector("#video-panel[data-state=connected]", timeout=WAIT)
    agent.wait_for_function("window.__zhixunVideo.uploaded > 0", timeout=WAIT)  # chunks are arriving
    video.wait_for_timeout(2500)  # talk a little

    agent.click("#video-hangup")
    agent.wait_for_selector("#video-panel[data-state=ended]", timeout=WAIT)
    assert "录像已保存" in agent.inner_text("#video-status")
    video.wait_for_selector("#ended:not([hidden])", timeout=WAIT)
    assert "工作人员已结束" in video.inner_text("#ended-reason")
    agent.wait_for_selector("#video-recordings a", timeout=WAIT)

    lines = app.state.transcripts.lines(conversation_id)  # type: ignore[attr-defined]
    events = [line.payload.get("event") for line in lines if isinstance(line.payload, dict)]
    for event in ("video_invite", "video_consent", "video_start", "video_stop", "recording"):
        assert event in events, events
    recording = next(
        line.payload for line in lines if isinstance(line.payload, dict) and line.payload.get("event") == "recording"
    )
    path = Path(server.settings.video.recordings_dir) / recording["file"]
    data = path.read_bytes()
    assert recording["bytes"] == len(data) > 0
    assert recording["sha256"] == hashlib.sha256(data).hexdigest()
    assert data[:4] == b"\x1a\x45\xdf\xa3"  # a WebM (EBML) file
    assert b"V_VP8" in data[:4096] and b"A_OPUS" in data[:4096]  # the citizen's picture and the mixed voices
    assert recording["duration_s"] > 2
    assert app.state.transcripts.verify(conversation_id).ok  # type: ignore[attr-defined]
    citizen_context.close()
    agent_context.close()
