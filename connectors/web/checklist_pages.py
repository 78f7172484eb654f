"""A checklist's print page (`/checklist/{id}`) and PDF (`/checklist/{id}.pdf`).

Checklist ids are unguessable (64-bit random), so the link itself is the
permission, like a shared document link.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from bot.checklists import Checklist
from connectors.web import checklist_pdf
from connectors.web.errors import ApiError

router = APIRouter(tags=["checklist"])
templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")
_ID = re.compile(r"^[0-9a-f]{16}$")


def _load(request: Request, checklist_id: str) -> Checklist:
    found = request.app.state.dialogue.checklists.get(checklist_id) if _ID.match(checklist_id) else None
    if found is None:
        raise ApiError(404, "unknown_checklist", "找不到这份材料清单，请在对话中重新生成。")
    return found


@router.get("/checklist/{checklist_id}.pdf", response_class=Response)
async def checklist_pdf_file(checklist_id: str, request: Request) -> Response:
    checklist = _load(request, checklist_id)
    body = await run_in_threadpool(checklist_pdf.render, checklist)
    filename = f"checklist-{checklist.id}.pdf"
    return Response(
        body, media_type="application/pdf", headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


@router.get("/checklist/{checklist_id}", response_class=HTMLResponse)
def checklist_page(checklist_id: str, request: Request) -> HTMLResponse:
    checklist = _load(request, checklist_id)
    made = checklist.created_at.astimezone().strftime("%Y年%m月%d日")
    return templates.TemplateResponse(request, "checklist.html", {"c": checklist, "made": made})
