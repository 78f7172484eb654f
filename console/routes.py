"""Admin API, protected by the admin bearer token until the console gets real accounts."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request

from bot.transcripts import TranscriptStore
from connectors.web.errors import ApiError

router = APIRouter(prefix="/api", tags=["admin"])


def require_admin(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    token = request.app.state.settings.admin_token
    if not token:
        raise ApiError(403, "admin_disabled", "管理接口未启用：请设置 ZHIXUN_ADMIN_TOKEN。")
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise ApiError(401, "unauthorized", "需要管理令牌（Authorization: Bearer …）。", {"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise ApiError(403, "forbidden", "管理令牌不正确。")


@router.get("/conversations/{conversation_id}", dependencies=[Depends(require_admin)])
def conversation(conversation_id: str, request: Request) -> dict:
    """The whole transcript of one conversation, oldest line first."""
    transcripts: TranscriptStore = request.app.state.transcripts
    if not transcripts.exists(conversation_id):
        raise ApiError(404, "unknown_conversation", "找不到这个会话。")
    return {
        "conversation_id": conversation_id,
        "lines": [line.to_json() for line in transcripts.lines(conversation_id)],
    }
