"""Admin API, protected by the admin bearer token until the console gets real accounts.

Every read of a transcript is recorded in the audit log (actor "admin-token" until then).
"""

from __future__ import annotations

import hmac
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from bot import transcript_export
from bot.audit import Action, AuditLog
from bot.transcripts import TranscriptStore
from connectors.web.errors import ApiError

router = APIRouter(prefix="/api", tags=["admin"])
ADMIN_ACTOR = "admin-token"


def require_admin(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    token = request.app.state.settings.admin_token
    if not token:
        raise ApiError(403, "admin_disabled", "管理接口未启用：请设置 ZHIXUN_ADMIN_TOKEN。")
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise ApiError(401, "unauthorized", "需要管理令牌（Authorization: Bearer …）。", {"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise ApiError(403, "forbidden", "管理令牌不正确。")


def _unknown() -> ApiError:
    return ApiError(404, "unknown_conversation", "找不到这个会话。")


def _audit(request: Request, action: Action, conversation_id: str, detail: dict | None = None) -> None:
    audit: AuditLog = request.app.state.audit
    client = request.client.host if request.client else None
    audit.record(ADMIN_ACTOR, action, f"conversation:{conversation_id}", role="admin", detail=detail, client=client)


@router.get("/conversations/{conversation_id}", dependencies=[Depends(require_admin)])
def conversation(conversation_id: str, request: Request) -> dict:
    """The whole transcript of one conversation, oldest line first, unmasked (the view is audited)."""
    transcripts: TranscriptStore = request.app.state.transcripts
    if not transcripts.exists(conversation_id):
        raise _unknown()
    _audit(request, "view", conversation_id)
    return {
        "conversation_id": conversation_id,
        "lines": [line.to_json() for line in transcripts.lines(conversation_id)],
    }


@router.get("/conversations/{conversation_id}/export.{fmt}", dependencies=[Depends(require_admin)])
def conversation_export(
    conversation_id: str, fmt: Literal["json", "html", "pdf"], request: Request, mask: bool = True
) -> Response:
    """One conversation with its integrity check, as JSON, a print page or a PDF; masked unless mask=false."""
    try:
        export = transcript_export.collect(request.app.state.transcripts, conversation_id, mask=mask)
    except KeyError:
        raise _unknown() from None
    if fmt == "json":
        response: Response = JSONResponse(transcript_export.as_json(export))
    elif fmt == "html":
        response = HTMLResponse(transcript_export.as_html(export))
    else:
        disposition = f'attachment; filename="conversation-{conversation_id}.pdf"'
        response = Response(
            transcript_export.as_pdf(export), media_type="application/pdf", headers={"Content-Disposition": disposition}
        )
    _audit(request, "export", conversation_id, {"format": fmt, "masked": mask})
    return response
