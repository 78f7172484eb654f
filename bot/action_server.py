"""Rasa's action-server protocol, served by the app at `POST /webhook`.

Rasa posts `{next_action, sender_id, tracker, domain}` and expects
`{events, responses}`; a validation action may instead reject (HTTP 400),
which lets the form hand the turn back to the policies. This is the same
contract rasa-sdk implements; it is small enough to serve here directly, so
custom actions run next to the knowledge base they read.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from bot.messages import Button, ButtonsMessage, RichMessage, TextMessage

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)

Event = dict[str, Any]


def slot(name: str, value: Any) -> Event:
    return {"event": "slot", "name": name, "value": value, "timestamp": None}


def followup(action: str) -> Event:
    return {"event": "followup", "name": action, "timestamp": None}


def end_loop() -> Event:
    return {"event": "active_loop", "name": None, "timestamp": None}


class Rejected(Exception):
    """The action declines the turn (e.g. a form slot it cannot use); Rasa's policies take over."""


@dataclass
class Tracker:
    """The parts of Rasa's tracker the actions read."""

    sender_id: str
    slots: dict[str, Any]
    text: str
    intent: str
    intent_confidence: float
    entities: list[dict[str, Any]]
    active_loop: str | None
    metadata: dict[str, Any]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tracker:
        latest = data.get("latest_message") or {}
        intent = latest.get("intent") or {}
        return cls(
            sender_id=str(data.get("sender_id", "")),
            slots=data.get("slots") or {},
            text=str(latest.get("text") or ""),
            intent=str(intent.get("name") or ""),
            intent_confidence=float(intent.get("confidence") or 0.0),
            entities=latest.get("entities") or [],
            active_loop=(data.get("active_loop") or {}).get("name"),
            metadata=latest.get("metadata") or {},
        )

    def entity(self, name: str) -> str | None:
        for entity in self.entities:
            if entity.get("entity") == name and entity.get("value") not in (None, ""):
                return str(entity["value"])
        return None

    @property
    def from_button(self) -> bool:
        return self.text.startswith("/")


@dataclass
class Dispatcher:
    """Collects the replies; each one travels to the app as a Rasa `custom` payload."""

    messages: list[RichMessage] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def say(self, message: RichMessage) -> None:
        self.messages.append(message)

    def text(self, text: str) -> None:
        self.say(TextMessage(text=text))

    def buttons(self, text: str, buttons: list[Button]) -> None:
        self.say(ButtonsMessage(text=text, buttons=buttons))

    def responses(self) -> list[dict[str, Any]]:
        out = [{"custom": {"zhixun": m.model_dump(mode="json")}} for m in self.messages]
        if self.meta:
            out.append({"custom": {"zhixun_meta": self.meta}})
        return out


Action = Callable[[Tracker, Dispatcher, Any], list[Event]]
ACTIONS: dict[str, Action] = {}


def action(name: str) -> Callable[[Action], Action]:
    def register(func: Action) -> Action:
        ACTIONS[name] = func
        return func

    return register


# Actions run on their own threads: chat requests waiting for Rasa hold the default thread pool,
# and Rasa's action calls must never queue behind them (that would stall every turn).
ACTION_THREADS = anyio.CapacityLimiter(16)


@router.post("/webhook")
async def run_action(body: dict[str, Any], request: Request) -> JSONResponse:
    expected = request.app.state.action_token
    if not expected or not hmac.compare_digest(request.query_params.get("token", ""), expected):
        return JSONResponse({"error": "forbidden"}, status_code=403)
    name = str(body.get("next_action", ""))
    func = ACTIONS.get(name)
    if func is None:
        return JSONResponse({"error": f"no action {name!r}", "action_name": name}, status_code=404)
    raw_tracker = body.get("tracker") or {}
    if not isinstance(raw_tracker, dict):
        return JSONResponse({"error": "tracker must be an object", "action_name": name}, status_code=400)
    tracker = Tracker.from_json(raw_tracker)
    log.debug(
        "%s for %s (intent %s %.2f) slots %s",
        name,
        tracker.sender_id,
        tracker.intent,
        tracker.intent_confidence,
        tracker.slots,
    )
    dispatcher = Dispatcher()
    try:
        events = await anyio.to_thread.run_sync(
            func, tracker, dispatcher, request.app.state.dialogue, limiter=ACTION_THREADS
        )
    except Rejected as exc:
        return JSONResponse({"error": str(exc), "action_name": name}, status_code=400)
    return JSONResponse({"events": events, "responses": dispatcher.responses()})
