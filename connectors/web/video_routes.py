"""The citizen's side of a video callback: the link's page, consent (claiming the link), and signalling.

GET  /video/<token>[?c=<conversation id>]   the recording notice and the call page, or why it won't open
POST /api/video/claim                       {"token", "conversation_id"?} on 「同意并开始」: uses up the link
WS   /ws/video/<call id>?key=<key>          offer/answer/ICE relay to the agent (key from the claim)
"""

from __future__ import annotations

import html
from typing import Any

from fastapi import APIRouter, Query, Request, WebSocket
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, Response
from pydantic import BaseModel, Field

from bot.video import VideoError, VideoService, relay_socket
from connectors.web.errors import ApiError
from connectors.web.routes import STATIC_DIR, check_rate

router = APIRouter(tags=["video"])
# How a refusal is answered: a link that never existed, one that is gone, one for someone else.
REFUSAL_STATUS = {"unknown_link": 404, "link_used": 410, "link_expired": 410, "call_ended": 410}
REFUSAL_TITLE = {
    "unknown_link": "链接无效",
    "link_used": "链接已使用",
    "link_expired": "链接已过期",
    "wrong_conversation": "无法打开",
    "call_ended": "通话已结束",
}
PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}


class ClaimIn(BaseModel):
    token: str = Field(min_length=16, max_length=128)
    conversation_id: str | None = Field(default=None, max_length=64)


def _video(request: Request | WebSocket) -> VideoService:
    return request.app.state.video


def refusal_page(error: VideoError) -> HTMLResponse:
    title = REFUSAL_TITLE.get(error.code, "无法打开")
    body = f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · 智询视频通话</title>
<link rel="stylesheet" href="/static/video.css"></head>
<body><main class="refused" data-code="{html.escape(error.code)}">
<h1>{html.escape(title)}</h1><p id="reason">{html.escape(error.message)}</p>
<p><a class="button" href="/">返回智能咨询</a></p>
</main></body></html>"""
    return HTMLResponse(body, status_code=REFUSAL_STATUS.get(error.code, 403), headers=PRIVATE)


@router.get("/video/{token}", include_in_schema=False)
def video_page(token: str, request: Request, c: str | None = Query(default=None, max_length=64)) -> Response:
    """Opening the link changes nothing (link previews and prefetchers open links too): it only checks
    that the link would open, then shows the recording notice. Consent claims it."""
    try:
        _video(request).check_link(token, c)
    except VideoError as error:
        return refusal_page(error)
    return FileResponse(STATIC_DIR / "video.html", media_type="text/html; charset=utf-8", headers=PRIVATE)


@router.post("/api/video/claim")
def claim(body: ClaimIn, request: Request) -> dict[str, Any]:
    """The citizen agreed to the recorded call: the link is used up, and the page gets its socket key."""
    check_rate(request.app.state.rate_limiter, request.client.host if request.client else "unknown")
    video = _video(request)
    try:
        claimed = video.claim(body.token, body.conversation_id)
    except VideoError as error:
        raise ApiError(REFUSAL_STATUS.get(error.code, 403), error.code, error.message) from None
    return {
        "call_id": claimed.call.id,
        "key": claimed.key,
        "agent_name": claimed.call.agent_name,
        "ice_servers": video.settings.ice_servers,
        "socket": f"/ws/video/{claimed.call.id}",
    }


@router.websocket("/ws/video/{call_id}")
async def citizen_signalling(socket: WebSocket, call_id: str, key: str = "") -> None:
    """Frames both ways: {"type": "hello"|"here"|"offer"|"answer"|"ice"|"hangup", "data"?}; the server adds
    {"type": "bye"} when the other side left and {"type": "hangup", "from": "server"} when the call ended."""
    video = _video(socket)
    call = await run_in_threadpool(video.citizen_call, call_id, key)
    if call is None:
        await socket.close(code=1008)
        return
    await socket.accept()

    await relay_socket(socket, socket.app.state.hub, call.id, "citizen")
