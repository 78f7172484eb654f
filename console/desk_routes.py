"""The agent console: its page, its JSON API and its live-update socket. Routes stay thin; `Desk` decides."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, Request, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from bot.escalation import EscalationError
from bot.live import QUEUES, LocalHub, conversation_topic
from bot.privacy import mask_value
from connectors.web.errors import ApiError
from console.accounts import STATUSES, Account
from console.auth import account_from_websocket, client_address, require
from console.canned import CannedReplies
from console.desk import Desk, agent_ref
from console.errors import refusal

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
router = APIRouter(tags=["console"])
Agent = Annotated[Account, Depends(require("chat"))]


class MessageIn(BaseModel):
    text: str = Field(default="", max_length=2000)
    kb_id: str | None = Field(default=None, max_length=80, description="Send this item's answer card instead.")


class TransferIn(BaseModel):
    queue_id: str | None = Field(default=None, max_length=40)
    to_agent: str | None = Field(default=None, max_length=64)
    note: str = Field(default="", max_length=500)


class CloseIn(BaseModel):
    summary: str = Field(min_length=1, max_length=1000)
    category: str = Field(min_length=1, max_length=40)


class StatusIn(BaseModel):
    status: Literal["online", "busy", "away", "offline"]


class CannedIn(BaseModel):
    title: str = Field(min_length=1, max_length=40)
    text: str = Field(min_length=1, max_length=2000)


def get_desk(request: Request) -> Desk:
    return request.app.state.desk


DeskDep = Annotated[Desk, Depends(get_desk)]


def _act(call: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return call(*args, **kwargs)
    except EscalationError as exc:
        raise refusal(exc) from None


@router.get("/console", include_in_schema=False)
def console_page(_: Agent) -> FileResponse:
    return FileResponse(
        STATIC / "console.html", media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"}
    )


@router.get("/api/console/board")
def board(account: Agent, desk: DeskDep) -> dict:
    """Waiting citizens in the queues this account serves, and the conversations it holds."""
    return desk.board(account)


@router.get("/api/console/directory")
def directory(account: Agent, desk: DeskDep, request: Request) -> dict:
    """Where a conversation can be transferred: every queue, and the colleagues who are not offline."""
    accounts = request.app.state.console_auth.accounts.list()
    return {
        "queues": [{"id": q.id, "name": q.name} for q in desk.escalations.queues.queues.values()],
        "agents": [
            {
                "username": a.username,
                "display_name": a.display_name,
                "status": a.status,
                "departments": list(a.departments),
            }
            for a in accounts
            if a.active and a.can("chat") and a.status != "offline" and a.username != account.username
        ],
    }


@router.get("/api/console/escalations/{escalation_id}")
def conversation(escalation_id: int, account: Agent, desk: DeskDep, request: Request) -> dict:
    return _act(desk.conversation, account, escalation_id, client_address(request))


@router.post("/api/console/escalations/{escalation_id}/accept")
def accept(escalation_id: int, account: Agent, desk: DeskDep) -> dict:
    _act(desk.open, account, escalation_id)
    return desk.summary(account, _act(desk.escalations.accept, escalation_id, agent_ref(account)))


@router.post("/api/console/escalations/{escalation_id}/messages")
def send(escalation_id: int, body: MessageIn, account: Agent, desk: DeskDep, request: Request) -> dict:
    """Type a reply, or insert a KB item's answer (its card, as the bot would show it)."""
    text, extra = body.text.strip(), None
    if body.kb_id:
        card = request.app.state.dialogue.answerer.card(body.kb_id)[0] if desk.retriever.entry(body.kb_id) else None
        if card is None:
            raise ApiError(422, "unknown_item", "没有这个事项。")
        text = text or f"【{card.title}】{card.summary}"
        extra = {"rich": [card.model_dump(mode="json")]}
    if not text:
        raise ApiError(422, "empty_text", "请输入回复内容。")
    line = _act(desk.escalations.say, escalation_id, agent_ref(account), text, extra)
    return desk.line(account, line)


@router.post("/api/console/escalations/{escalation_id}/transfer")
def transfer(escalation_id: int, body: TransferIn, account: Agent, desk: DeskDep, request: Request) -> dict:
    to_agent = None
    if body.to_agent:
        colleague = request.app.state.console_auth.accounts.by_username(body.to_agent)
        if colleague is None or not colleague.active or not colleague.can("chat"):
            raise ApiError(422, "unknown_agent", "没有这位工作人员。")
        to_agent = agent_ref(colleague)
    if not body.queue_id and not to_agent:
        raise ApiError(422, "no_target", "请选择要转接的部门或工作人员。")
    moved = _act(
        desk.escalations.transfer,
        escalation_id,
        agent_ref(account),
        queue_id=body.queue_id,
        to_agent=to_agent,
        note=body.note,
    )
    return desk.summary(account, moved)


@router.post("/api/console/escalations/{escalation_id}/return")
def return_to_bot(escalation_id: int, account: Agent, desk: DeskDep) -> dict:
    return desk.summary(account, _act(desk.escalations.return_to_bot, escalation_id, agent_ref(account)))


@router.post("/api/console/escalations/{escalation_id}/close")
def close(escalation_id: int, body: CloseIn, account: Agent, desk: DeskDep) -> dict:
    closed = _act(desk.escalations.close, escalation_id, agent_ref(account), body.summary, body.category)
    return desk.summary(account, closed)


@router.get("/api/console/canned")
def canned(account: Agent, request: Request) -> list[dict]:
    replies: CannedReplies = request.app.state.canned
    return [vars(c) for c in replies.for_agent(account.username)]


@router.post("/api/console/canned")
def add_canned(body: CannedIn, account: Agent, request: Request) -> dict:
    replies: CannedReplies = request.app.state.canned
    return vars(replies.add(account.username, body.title, body.text))


@router.post("/api/console/status")
def set_status(body: StatusIn, account: Agent, request: Request) -> dict:
    assert body.status in STATUSES
    request.app.state.console_auth.accounts.set_status(account.id, body.status)
    return {"status": body.status}


@router.websocket("/console/ws")
async def live(socket: WebSocket) -> None:
    """Server → console: {"type": "escalation", …} when a queue changes, {"type": "line", …} in a followed
    conversation. Console → server: {"follow": <escalation id>} to watch a conversation it may open."""
    account = await account_from_websocket(socket)
    if account is None or not account.can("chat"):
        await socket.close(code=1008)
        return
    await socket.accept()
    desk: Desk = socket.app.state.desk
    hub: LocalHub = socket.app.state.hub
    async with hub.subscribe(QUEUES) as subscription:
        for held in await run_in_threadpool(desk.escalations.held_by, account.username):
            subscription.follow(conversation_topic(held.conversation_id))

        async def forward() -> None:
            while True:
                event = await subscription.get()
                if event["type"] == "escalation" and _concerns(account, event["escalation"]):
                    pii = account.can("view_pii")
                    await socket.send_json(
                        {**event, "escalation": event["escalation"] if pii else mask_value(event["escalation"])}
                    )
                elif event["type"] == "line":
                    await socket.send_json({**event, "line": _masked_line(account, event["line"])})

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(forward)
            try:
                while True:
                    frame = await socket.receive_text()
                    await _follow(frame, account, desk, subscription)
            except (WebSocketDisconnect, RuntimeError):
                pass
            tasks.cancel_scope.cancel()


async def _follow(frame: str, account: Account, desk: Desk, subscription: Any) -> None:
    try:
        escalation_id = int(json.loads(frame)["follow"])
    except (ValueError, KeyError, TypeError):
        return
    escalation = await run_in_threadpool(desk.escalations.get, escalation_id)
    if escalation is not None and desk.may_open(account, escalation):
        subscription.follow(conversation_topic(escalation.conversation_id))


def _concerns(account: Account, escalation: dict[str, Any]) -> bool:
    return account.serves(escalation["queue_id"]) or account.username in (
        escalation["agent"],
        escalation["target_agent"],
    )


def _masked_line(account: Account, line: dict[str, Any]) -> dict[str, Any]:
    if account.can("view_pii"):
        return line
    return {**line, "text": mask_value(line["text"]), "payload": mask_value(line["payload"])}
