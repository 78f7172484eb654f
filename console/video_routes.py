"""The agent's side of a video callback: invite, signalling socket, recording upload and playback.

POST /api/console/escalations/<id>/video          invite the citizen (link in chat; SMS/WeChat if configured)
GET  /api/console/escalations/<id>/video          the conversation's calls and recordings
POST /api/console/video/<call>/start              both sides connected
POST /api/console/video/<call>/chunks?seq=N       one MediaRecorder chunk (video/webm, audio/webm, video/mp4)
POST /api/console/video/<call>/end                hang up: finalise the recording
GET  /api/console/video/<call>/recording          play it back (agents who may open the conversation; audited)
WS   /console/video/ws/<call>                     offer/answer/ICE relay to the citizen's page
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, WebSocket
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from bot.escalation import EscalationError
from bot.video import RECORDING_TYPES, VideoCall, VideoError, VideoService, relay_socket
from connectors.web.errors import ApiError
from console.accounts import Account
from console.auth import account_from_websocket, client_address, require
from console.desk import Desk, agent_ref
from console.errors import refusal

router = APIRouter(tags=["console"])
Agent = Annotated[Account, Depends(require("chat"))]


class InviteIn(BaseModel):
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9 -]{5,20}$", description="Also send the link by SMS.")


class EndIn(BaseModel):
    duration_s: float | None = Field(default=None, ge=0, description="The recorder's own running time.")


def _video(request: Request | WebSocket) -> VideoService:
    return request.app.state.video


def _desk(request: Request) -> Desk:
    return request.app.state.desk


def _call_json(call: VideoCall) -> dict[str, Any]:
    data = call.to_json()
    data["recording_url"] = f"/api/console/video/{call.id}/recording" if call.finalised else None
    return data


@router.post("/api/console/escalations/{escalation_id}/video")
def invite(escalation_id: int, account: Agent, request: Request, body: InviteIn | None = None) -> dict[str, Any]:
    """Send the citizen a single-use link to a recorded video call (the agent must hold the conversation)."""
    video = _video(request)
    try:
        invitation = video.invite(escalation_id, agent_ref(account), body.phone if body else None)
    except VideoError as error:
        raise refusal(error) from None
    return {
        "call": _call_json(invitation.call),
        "notified": list(invitation.notified),
        "ice_servers": video.settings.ice_servers,
        "socket": f"/console/video/ws/{invitation.call.id}",
        "max_chunk_bytes": video.settings.max_chunk_bytes,
    }


@router.get("/api/console/escalations/{escalation_id}/video")
def calls(escalation_id: int, account: Agent, request: Request) -> dict[str, Any]:
    try:
        _desk(request).open(account, escalation_id)
    except EscalationError as error:
        raise refusal(error) from None
    return {"calls": [_call_json(call) for call in _video(request).calls_for(escalation_id)]}


@router.post("/api/console/video/{call_id}/start")
def start(call_id: str, account: Agent, request: Request) -> dict[str, Any]:
    try:
        return _call_json(_video(request).start(call_id, agent_ref(account)))
    except VideoError as error:
        raise refusal(error) from None


@router.post("/api/console/video/{call_id}/chunks")
async def upload_chunk(
    call_id: str, account: Agent, request: Request, seq: Annotated[int, Query(ge=0, le=1_000_000)]
) -> dict[str, Any]:
    """One chunk of the agent browser's MediaRecorder, in order from seq 0; the body is the raw bytes."""
    video = _video(request)
    limit = video.settings.max_chunk_bytes
    content_type = request.headers.get("content-type", "")
    if content_type.partition(";")[0].strip().lower() not in RECORDING_TYPES:
        raise ApiError(415, "unsupported_type", "录像格式不受支持（仅支持 video/webm、audio/webm、video/mp4）。")
    declared = request.headers.get("content-length")
    too_large = ApiError(413, "chunk_too_large", f"录像片段太大（每段最多{limit // 1024}KB）。")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise too_large
    data = bytearray()
    async for block in request.stream():
        data += block
        if len(data) > limit:
            raise too_large
    try:
        call = await run_in_threadpool(video.add_chunk, call_id, agent_ref(account), seq, content_type, bytes(data))
    except VideoError as error:
        raise refusal(error) from None
    return {"next_seq": call.recording_chunks, "bytes": call.recording_bytes}


@router.post("/api/console/video/{call_id}/end")
def end(call_id: str, account: Agent, request: Request, body: EndIn | None = None) -> dict[str, Any]:
    """Hang up. The recording (if any chunk arrived) is checksummed and attached to the transcript."""
    try:
        call = _video(request).finish(call_id, agent_ref(account), body.duration_s if body else None)
    except VideoError as error:
        raise refusal(error) from None
    return _call_json(call)


@router.get("/api/console/video/{call_id}/recording")
def recording(call_id: str, account: Agent, request: Request) -> FileResponse:
    """The finished recording, for agents who may open its conversation. Every viewing is audited."""
    video, desk = _video(request), _desk(request)
    call = video.get(call_id)
    if call is None:
        raise ApiError(404, "unknown_call", "找不到这次视频通话。")
    try:
        desk.open(account, call.escalation_id)
    except EscalationError as error:
        raise refusal(error) from None
    path = video.recording_path(call)
    if path is None:
        raise ApiError(404, "no_recording", "这次通话没有已保存的录像。")
    desk.audit.record(
        account.username,
        "view",
        f"recording:{call.id}",
        role=account.role,
        detail={
            "conversation_id": call.conversation_id,
            "escalation_id": call.escalation_id,
            "file": call.recording_file,
            "sha256": call.recording_sha256,
        },
        client=client_address(request),
    )
    return FileResponse(
        path,
        media_type=call.recording_type or "application/octet-stream",
        filename=call.recording_file,
        content_disposition_type="inline",
        headers={"Cache-Control": "no-store"},
    )


@router.websocket("/console/video/ws/{call_id}")
async def agent_signalling(socket: WebSocket, call_id: str) -> None:
    """The agent's end of the relay (see connectors/web/video_routes.py); only the agent who invited."""
    account = await account_from_websocket(socket)
    video = _video(socket)
    call = await run_in_threadpool(video.get, call_id)
    if account is None or not account.can("chat") or call is None or call.agent != account.username or call.ended_at:
        await socket.close(code=1008)
        return
    await socket.accept()

    await relay_socket(socket, socket.app.state.hub, call.id, "agent")
