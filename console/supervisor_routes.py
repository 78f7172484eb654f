"""The supervisor's console: its page and its JSON API under /api/console/supervisor/.

Every route needs `supervise`; KB editing also needs `edit_kb`, exports also `export` (and an unmasked
export `view_pii`). Live updates come over the agents' socket /console/ws (topic `queues`); the page
also polls /live every few seconds, since agents' status changes are not announced there.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot import transcript_export
from bot.audit import AuditLog
from bot.escalation import EscalationRow
from bot.privacy import mask_text
from bot.transcripts import ConversationRow, MessageRow, TranscriptStore
from connectors.web.errors import ApiError
from console.accounts import Account
from console.analytics import Analytics, DateRange
from console.auth import client_address, current_account
from console.clusters import DEFAULT_THRESHOLD, cluster_failed, retriever_encoder
from console.desk_routes import STATIC
from console.kb_editor import EditError, KBEditor, parse_yaml, validate
from knowledge_base.retrieval import Retriever

PREFIX = "/api/console/supervisor"
router = APIRouter(tags=["supervisor"])


def require_all(*permissions: str) -> Callable[..., Account]:
    """The current account if it has every one of `permissions`, else 403."""

    def dependency(account: Annotated[Account, Depends(current_account)]) -> Account:
        if not all(account.can(p) for p in permissions):
            raise ApiError(403, "permission_denied", "您没有权限进行此操作。")
        return account

    return dependency


Supervisor = Annotated[Account, Depends(require_all("supervise"))]
Curator = Annotated[Account, Depends(require_all("supervise", "edit_kb"))]
Exporter = Annotated[Account, Depends(require_all("supervise", "export"))]
Since = Annotated[dt.date | None, Query(description="First local day (YYYY-MM-DD); default a week back")]
Until = Annotated[dt.date | None, Query(description="Last local day, included; default today")]


@dataclass(frozen=True)
class Supervision:
    analytics: Analytics
    editor: KBEditor
    transcripts: TranscriptStore
    retriever: Retriever
    audit: AuditLog


def supervision(request: Request) -> Supervision:
    """Built on first use from what the app already holds (one per app)."""
    state = request.app.state
    found: Supervision | None = getattr(state, "supervision", None)
    if found is None:
        escalations = state.escalations
        found = Supervision(
            Analytics(escalations.engine, escalations, state.settings.escalation.timezone),
            KBEditor(state.kb_store, state.retriever, state.audit),
            state.transcripts,
            state.retriever,
            state.audit,
        )
        state.supervision = found
    return found


Sup = Annotated[Supervision, Depends(supervision)]


def _range(sup: Supervision, since: dt.date | None, until: dt.date | None, default_days: int = 7) -> DateRange:
    try:
        return sup.analytics.range(since, until, default_days)
    except ValueError as exc:
        message = "结束日期早于开始日期。" if "before" in str(exc) else "日期范围最长一年。"
        raise ApiError(422, "invalid_range", message) from None


def _edit_error(exc: EditError) -> JSONResponse:
    body = {"error": {"code": exc.code, "message": exc.message, "problems": [p.to_json() for p in exc.problems]}}
    return JSONResponse(body, status_code=exc.status)


def _private(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


# Page ------------------------------------------------------------------------------------------------------


@router.get("/console/supervisor", include_in_schema=False)
def supervisor_page(_: Supervisor) -> FileResponse:
    return FileResponse(
        STATIC / "supervisor.html", media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"}
    )


# Live view and figures ---------------------------------------------------------------------------------------


@router.get(f"{PREFIX}/live")
def live(_: Supervisor, sup: Sup, request: Request) -> dict:
    """Queues (waiting, longest wait) and agents (status, active chats / capacity), now."""
    return sup.analytics.live(request.app.state.console_auth.accounts.list())


@router.get(f"{PREFIX}/figures")
def figures(_: Supervisor, sup: Sup, since: Since = None, until: Until = None) -> dict:
    """Today's figures and per-day figures over the range (local days in the escalation time zone)."""
    today = sup.analytics.range(None, None, 1)
    return {"today": sup.analytics.figures(today)["total"], "range": sup.analytics.figures(_range(sup, since, until))}


@router.get(f"{PREFIX}/failed")
def failed(
    _: Supervisor,
    sup: Sup,
    since: Since = None,
    until: Until = None,
    threshold: Annotated[float, Query(ge=0.5, le=0.99)] = DEFAULT_THRESHOLD,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict:
    """What the bot failed on, grouped by meaning with the retrieval model; largest groups first."""
    days = _range(sup, since, until)
    questions = sup.analytics.failed_questions(days)
    clusters = cluster_failed(questions, retriever_encoder(sup.retriever), threshold)

    def title_of(kb_id: str) -> str | None:
        entry = sup.retriever.entry(kb_id)
        return entry.title if entry else None

    return {
        "since": days.since.isoformat(),
        "until": days.until.isoformat(),
        "failed": len(questions),
        "threshold": threshold,
        "clusters": [c.to_json(title_of) for c in clusters[:limit]],
    }


@router.get(f"{PREFIX}/keywords")
def keywords(
    _: Supervisor,
    sup: Sup,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict:
    """The most frequent words in citizens' questions (jieba, stop words removed)."""
    return sup.analytics.keywords(_range(sup, since, until), limit)


# Knowledge base --------------------------------------------------------------------------------------------


class EntryIn(BaseModel):
    yaml: str | None = Field(default=None, max_length=60_000, description="The entry as YAML")
    entry: dict[str, Any] | None = Field(default=None, description="…or as JSON (the form editor)")
    note: str = Field(default="", max_length=500, description="Why: kept with the version")
    base_version: int | None = Field(default=None, description="The version the edit started from (409 if stale)")


class QuestionIn(BaseModel):
    question: str = Field(min_length=1, max_length=200)
    note: str = Field(default="", max_length=500)


class DraftIn(BaseModel):
    questions: list[str] = Field(min_length=1, max_length=50)
    like: str | None = Field(default=None, max_length=80, description="An existing item to take department etc. from")


def _entry_of(body: EntryIn) -> Any:
    if body.yaml is not None:
        data, root = parse_yaml(body.yaml)
        return validate(data, root)
    if body.entry is not None:
        return validate(body.entry)
    raise EditError(422, "invalid_entry", "请提供事项内容（YAML 或表单）。")


@router.get(f"{PREFIX}/kb/entries")
def kb_entries(_: Curator, sup: Sup, q: Annotated[str, Query(max_length=100)] = "") -> dict:
    """Entries whose id, title, department or questions contain `q`."""
    return {"entries": sup.editor.search(q)}


@router.get(f"{PREFIX}/kb/entries/{{entry_id}}")
def kb_entry(entry_id: str, _: Curator, sup: Sup) -> Response:
    try:
        return JSONResponse(sup.editor.detail(entry_id))
    except EditError as exc:
        return _edit_error(exc)


@router.get(f"{PREFIX}/kb/entries/{{entry_id}}/history")
def kb_history(entry_id: str, _: Curator, sup: Sup) -> Response:
    try:
        return JSONResponse({"id": entry_id, "versions": sup.editor.history(entry_id)})
    except EditError as exc:
        return _edit_error(exc)


@router.get(f"{PREFIX}/kb/entries/{{entry_id}}/versions/{{version}}")
def kb_version(entry_id: str, version: int, _: Curator, sup: Sup) -> Response:
    try:
        return JSONResponse(sup.editor.version_yaml(entry_id, version))
    except EditError as exc:
        return _edit_error(exc)


@router.put(f"{PREFIX}/kb/entries/{{entry_id}}")
def kb_update(entry_id: str, body: EntryIn, account: Curator, sup: Sup, request: Request) -> Response:
    """Save an edited entry as a new version (validated, checked against the whole KB, audited, live at once)."""
    try:
        entry = _entry_of(body)
        if entry.id != entry_id:
            raise EditError(422, "id_changed", "不能修改事项编号；如需新事项请新建。")
        saved = sup.editor.save(
            account, entry, body.note, create=False, base_version=body.base_version, client=client_address(request)
        )
    except EditError as exc:
        return _edit_error(exc)
    return JSONResponse(saved)


@router.post(f"{PREFIX}/kb/entries")
def kb_create(body: EntryIn, account: Curator, sup: Sup, request: Request) -> Response:
    """Add a new entry (e.g. a completed draft from a cluster of failed questions)."""
    try:
        saved = sup.editor.save(account, _entry_of(body), body.note, create=True, client=client_address(request))
    except EditError as exc:
        return _edit_error(exc)
    return JSONResponse(saved, status_code=201)


@router.post(f"{PREFIX}/kb/entries/{{entry_id}}/questions")
def kb_add_question(entry_id: str, body: QuestionIn, account: Curator, sup: Sup, request: Request) -> Response:
    """Teach the bot a question it failed on: add it to an existing entry's questions (a new version)."""
    try:
        saved = sup.editor.add_question(account, entry_id, body.question, body.note, client_address(request))
    except EditError as exc:
        return _edit_error(exc)
    return JSONResponse(saved)


@router.post(f"{PREFIX}/kb/draft")
def kb_draft(body: DraftIn, _: Curator, sup: Sup) -> dict:
    """A new entry's YAML prefilled from a cluster, to complete in the editor and save with POST kb/entries."""
    return sup.editor.draft(body.questions, body.like)


# Exports ---------------------------------------------------------------------------------------------------


def _may_unmask(account: Account, mask: bool) -> None:
    if not mask and not account.can("view_pii"):
        raise ApiError(403, "permission_denied", "您没有查看个人信息的权限，只能导出脱敏记录。")


@router.get(f"{PREFIX}/conversations")
def conversations(
    _: Exporter,
    sup: Sup,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict:
    """Conversations started in the range, newest first, with their first question (always masked)."""
    days = _range(sup, since, until)
    with Session(sup.transcripts.engine) as session:
        rows = list(
            session.execute(
                select(ConversationRow)
                .where(ConversationRow.created_at >= days.start, ConversationRow.created_at < days.end)
                .order_by(ConversationRow.created_at.desc())
                .limit(limit)
            ).scalars()
        )
        ids = [r.id for r in rows]
        first_seq = (
            select(MessageRow.conversation_id, func.min(MessageRow.seq).label("seq"))
            .where(MessageRow.conversation_id.in_(ids), MessageRow.role == "citizen")
            .group_by(MessageRow.conversation_id)
            .subquery()
        )
        first = {
            cid: text
            for cid, text in session.execute(
                select(MessageRow.conversation_id, MessageRow.text).join(
                    first_seq,
                    (MessageRow.conversation_id == first_seq.c.conversation_id) & (MessageRow.seq == first_seq.c.seq),
                )
            )
        }
        escalated = set(
            session.scalars(select(EscalationRow.conversation_id).where(EscalationRow.conversation_id.in_(ids)))
        )
    return {
        "since": days.since.isoformat(),
        "until": days.until.isoformat(),
        "conversations": [
            {
                "id": r.id,
                "channel": r.channel,
                "created_at": _iso(r.created_at),
                "last_active_at": _iso(r.last_active_at),
                "lines": r.last_seq,
                "escalated": r.id in escalated,
                "first_question": mask_text(first.get(r.id, ""))[:80],
            }
            for r in rows
        ],
    }


@router.get(f"{PREFIX}/export/transcripts.jsonl")
def export_transcripts(
    account: Exporter, sup: Sup, request: Request, since: Since = None, until: Until = None, mask: bool = True
) -> Response:
    """Every transcript line written in the range, one JSON object per line (masked unless mask=false,
    which needs `view_pii`); audited."""
    _may_unmask(account, mask)
    days = _range(sup, since, until)
    lines = sup.transcripts.export(since=days.start, until=days.end)
    body = "".join(json.dumps((ln.masked() if mask else ln).to_json(), ensure_ascii=False) + "\n" for ln in lines)
    sup.audit.record(
        account.username,
        "export",
        "transcripts",
        role=account.role,
        detail={
            "format": "jsonl",
            "since": days.since.isoformat(),
            "until": days.until.isoformat(),
            "lines": len(lines),
            "conversations": len({ln.conversation_id for ln in lines}),
            "masked": mask,
        },
        client=client_address(request),
    )
    name = f"transcripts-{days.since.isoformat()}-{days.until.isoformat()}{'' if mask else '-unmasked'}.jsonl"
    return _private(
        Response(
            body.encode("utf-8"),
            media_type="application/x-ndjson; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    )


@router.get(f"{PREFIX}/conversations/{{conversation_id}}/export.{{fmt}}")
def export_conversation(
    conversation_id: str,
    fmt: Literal["json", "html", "pdf"],
    account: Exporter,
    sup: Sup,
    request: Request,
    mask: bool = True,
) -> Response:
    """One conversation with its integrity check as JSON, a print page or a PDF; audited."""
    _may_unmask(account, mask)
    try:
        export = transcript_export.collect(sup.transcripts, conversation_id, mask=mask)
    except KeyError:
        raise ApiError(404, "unknown_conversation", "找不到这个会话。") from None
    if fmt == "json":
        response: Response = JSONResponse(transcript_export.as_json(export))
    elif fmt == "html":
        response = HTMLResponse(transcript_export.as_html(export))
    else:
        response = Response(
            transcript_export.as_pdf(export),
            media_type="application/pdf",
            headers={"Content-Disposition": f'attachment; filename="conversation-{conversation_id}.pdf"'},
        )
    sup.audit.record(
        account.username,
        "export",
        f"conversation:{conversation_id}",
        role=account.role,
        detail={"format": fmt, "masked": mask},
        client=client_address(request),
    )
    return _private(response)


def _iso(moment: dt.datetime) -> str:
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).isoformat()
