"""Web chat channel: `POST /api/chat`, the `/ws/chat` WebSocket, and the chat page."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response
from pydantic import ValidationError

from bot.service import ChatService, Turn, UnknownConversation, UserMessage
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


@router.websocket("/ws/chat")
async def chat_socket(socket: WebSocket) -> None:
    """Frames in: {"text", "payload"?, "conversation_id"?, "client_id"?}. Out: "typing", "reply" or "error"."""
    await socket.accept()
    client = socket.client.host if socket.client else "unknown"
    try:
        await _serve_socket(socket, client)
    except WebSocketDisconnect:
        return  # the turn in flight is already in the transcript; the page re-sends only unanswered lines


async def _serve_socket(socket: WebSocket, client: str) -> None:
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
            check_rate(app.state.rate_limiter, client)
            request = ChatRequest.model_validate(frame)
            await socket.send_json({"type": "typing", "client_id": client_id})
            response = await run_in_threadpool(
                run_turn, app.state.chat_service, request, app.state.settings.chat.max_text_chars, client
            )
            await socket.send_json({"type": "reply", "client_id": client_id, **response.model_dump(mode="json")})
        except (json.JSONDecodeError, ValidationError, AttributeError):
            await socket.send_json(
                {
                    "type": "error",
                    "client_id": client_id,
                    "error": {"code": "invalid_request", "message": "消息格式不正确。"},
                }
            )
        except ApiError as exc:
            await socket.send_json(
                {"type": "error", "client_id": client_id, "error": {"code": exc.code, "message": exc.message}}
            )


@router.get("/", include_in_schema=False)
def chat_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "chat.html", media_type="text/html; charset=utf-8")


@router.get("/embed.js", include_in_schema=False)
def embed_script(request: Request) -> Response:
    """`<script src=".../embed.js"></script>` on any portal page adds the chat as a floating window."""
    script = (STATIC_DIR / "embed.js").read_text(encoding="utf-8")
    origin = str(request.base_url).rstrip("/")
    return Response(script.replace("__ZHIXUN_ORIGIN__", origin), media_type="application/javascript; charset=utf-8")
