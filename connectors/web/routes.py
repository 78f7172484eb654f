"""Web chat channel: `POST /api/chat`, the `/ws/chat` WebSocket, and the chat page."""

from __future__ import annotations

import contextlib
import json
import logging
import re
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Request, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field, ValidationError

from bot.live import LocalHub, Subscription, conversation_topic
from bot.service import ChatService, Turn, UnknownConversation, UserMessage
from bot.transcripts import TranscriptLine, TranscriptStore
from connectors.web.errors import ApiError
from connectors.web.ratelimit import TokenBucket
from connectors.web.schemas import ChatRequest, ChatResponse, ErrorResponse, ScoredCandidate

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).resolve().parent / "static"
CHANNEL = "web"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")

router = APIRouter()


def get_chat_service(request: Request) -> ChatService:
    return request.app.state.chat_service


def clean_text(text: str, max_chars: int) -> str:
    """The citizen's text as stored: control characters and lone surrogates dropped, trimmed."""
    text = _CONTROL.sub("", text).strip()
    if not text:
        raise ApiError(422, "empty_text", "请输入您要咨询的问题。")
    if len(text) > max_chars:
        raise ApiError(422, "text_too_long", f"问题太长了（最多{max_chars}字），请精简后再问我。")
    return text


def check_rate(limiter: TokenBucket, client: str) -> None:
    wait = limiter.allow(client)
    if wait:
        raise ApiError(429, "rate_limited", "您发送得太快了，请稍后再试。", {"Retry-After": str(max(1, round(wait)))})


def to_response(turn: Turn) -> ChatResponse:
    answer = turn.answer
    return ChatResponse(
        conversation_id=turn.conversation_id,
        replies=answer.replies,
        kb_id=answer.kb_id,
        band=answer.band,
        candidates=[ScoredCandidate(kb_id=c.kb_id, score=c.score) for c in answer.candidates],
        handoff=answer.handoff,
        handled_by=turn.handled_by,
    )


def run_turn(service: ChatService, request: ChatRequest, max_chars: int, sender: str) -> ChatResponse:
    message = UserMessage(
        CHANNEL, clean_text(request.text, max_chars), request.conversation_id, sender, request.payload
    )
    try:
        return to_response(service.handle(message))
    except UnknownConversation:
        raise ApiError(404, "unknown_conversation", "找不到这个会话，请刷新页面开始新的咨询。") from None


_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (404, 413, 422, 429)}


@router.post("/api/chat", response_model=ChatResponse, responses=_ERRORS, tags=["chat"])
def chat(body: ChatRequest, request: Request, service: Annotated[ChatService, Depends(get_chat_service)]):
    """Send the citizen's text (or a pressed button's payload) and get the bot's replies."""
    settings = request.app.state.settings
    client = request.client.host if request.client else "unknown"
    check_rate(request.app.state.rate_limiter, client)
    return run_turn(service, body, settings.chat.max_text_chars, client)


class RatingIn(BaseModel):
    escalation_id: int
    score: int = Field(ge=1, le=5, description="1 (很不满意) … 5 (非常满意)")
    comment: str = Field(default="", max_length=500)


def citizen_view(line: TranscriptLine | dict[str, Any]) -> dict[str, Any]:
    """What the citizen's page may see of an agent or system line (never agents' notes to each other)."""
    data = line if isinstance(line, dict) else line.to_json()
    payload = data.get("payload") or {}
    return {
        "seq": data["seq"],
        "role": data["role"],
        "text": data["text"],
        "created_at": data["created_at"],
        **{key: payload[key] for key in CITIZEN_FIELDS if isinstance(payload, dict) and key in payload},
    }


CITIZEN_FIELDS = ("event", "escalation_id", "agent_name", "rate", "rich")


@router.get("/api/chat/{conversation_id}/lines", tags=["chat"])
def lines_after(conversation_id: str, request: Request, after: int = 0) -> dict:
    """Agent and system lines after `after` (a seq): how a JSON-API client follows a human handoff."""
    transcripts: TranscriptStore = request.app.state.transcripts
    if not transcripts.exists(conversation_id):
        raise ApiError(404, "unknown_conversation", "找不到这个会话，请刷新页面开始新的咨询。")
    return {"lines": [citizen_view(line) for line in _pushed_lines(transcripts, conversation_id, after)]}


@router.post("/api/chat/{conversation_id}/rating", tags=["chat"])
def rate(conversation_id: str, body: RatingIn, request: Request) -> dict:
    """The citizen's 好差评 of a finished human service, once per escalation."""
    if not request.app.state.escalations.rate(body.escalation_id, conversation_id, body.score, body.comment.strip()):
        raise ApiError(409, "cannot_rate", "这次服务已经评价过，或还不能评价。")
    return {"ok": True, "message": "感谢您的评价！"}


def _for_citizen(line: dict[str, Any]) -> bool:
    """Agents' messages and queue notices; not the queue entry itself, which the bot's reply announces."""
    payload = line.get("payload") or {}
    return line["role"] == "agent" or (line["role"] == "system" and payload.get("event") != "escalation")


def _pushed_lines(transcripts: TranscriptStore, conversation_id: str, after: int) -> list[TranscriptLine]:
    return [line for line in transcripts.lines(conversation_id) if line.seq > after and _for_citizen(line.to_json())]


@router.websocket("/ws/chat")
async def chat_socket(socket: WebSocket) -> None:
    """Frames in: {"text", "payload"?, "conversation_id"?, "client_id"?}, or {"type": "resume",
    "conversation_id", "after"} after a reconnect. Out: "typing", "reply", "error", and "line" (an agent's
    message or a queue notice, pushed as it happens)."""
    await socket.accept()
    client = socket.client.host if socket.client else "unknown"
    hub: LocalHub = socket.app.state.hub
    sending = anyio.Lock()

    async def send(frame: dict[str, Any]) -> None:
        async with sending:
            await socket.send_json(frame)

    async with hub.subscribe() as subscription:

        async def forward() -> None:
            while True:
                event = await subscription.get()
                if event["type"] == "line" and _for_citizen(event["line"]):
                    await send({"type": "line", "line": citizen_view(event["line"])})

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(forward)
            # On disconnect the turn in flight is already in the transcript; the page re-sends only unanswered lines.
            with contextlib.suppress(WebSocketDisconnect):
                await _serve_socket(socket, client, send, subscription)
            tasks.cancel_scope.cancel()


async def _serve_socket(socket: WebSocket, client: str, send: Any, subscription: Subscription) -> None:
    app = socket.app
    while True:
        message = await socket.receive()
        if message["type"] == "websocket.disconnect":
            return
        raw = message.get("text")
        client_id = None
        try:
            if raw is None:
                raise ApiError(422, "text_frames_only", "只支持文本消息。")
            frame = json.loads(raw)
            client_id = frame.get("client_id") if isinstance(frame, dict) else None
            if isinstance(frame, dict) and frame.get("type") == "resume":
                await _resume(app, frame, send, subscription)
                continue
            check_rate(app.state.rate_limiter, client)
            request = ChatRequest.model_validate(frame)
            if request.conversation_id:
                subscription.follow(conversation_topic(request.conversation_id))
            await send({"type": "typing", "client_id": client_id})
            response = await run_in_threadpool(
                run_turn, app.state.chat_service, request, app.state.settings.chat.max_text_chars, client
            )
            subscription.follow(conversation_topic(response.conversation_id))
            await send({"type": "reply", "client_id": client_id, **response.model_dump(mode="json")})
        except (json.JSONDecodeError, ValidationError, AttributeError):
            await send(
                {
                    "type": "error",
                    "client_id": client_id,
                    "error": {"code": "invalid_request", "message": "消息格式不正确。"},
                }
            )
        except ApiError as exc:
            await send({"type": "error", "client_id": client_id, "error": {"code": exc.code, "message": exc.message}})


async def _resume(app: Any, frame: dict[str, Any], send: Any, subscription: Subscription) -> None:
    """A reconnected page: follow its conversation again and replay what it missed meanwhile."""
    conversation_id, after = frame.get("conversation_id"), frame.get("after", 0)
    transcripts: TranscriptStore = app.state.transcripts
    if not isinstance(conversation_id, str) or not isinstance(after, int) or len(conversation_id) > 64:
        raise ApiError(422, "invalid_request", "消息格式不正确。")
    if not await run_in_threadpool(transcripts.exists, conversation_id):
        raise ApiError(404, "unknown_conversation", "找不到这个会话，请刷新页面开始新的咨询。")
    subscription.follow(conversation_topic(conversation_id))
    for line in await run_in_threadpool(_pushed_lines, transcripts, conversation_id, after):
        await send({"type": "line", "line": citizen_view(line)})


@router.get("/", include_in_schema=False)
def chat_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "chat.html", media_type="text/html; charset=utf-8")


@router.get("/embed.js", include_in_schema=False)
def embed_script(request: Request) -> Response:
    """`<script src=".../embed.js"></script>` on any portal page adds the chat as a floating window."""
    script = (STATIC_DIR / "embed.js").read_text(encoding="utf-8")
    origin = str(request.base_url).rstrip("/")
    return Response(script.replace("__ZHIXUN_ORIGIN__", origin), media_type="application/javascript; charset=utf-8")
