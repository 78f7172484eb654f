"""Talking to the Rasa server: one REST-channel call per citizen message.

Replies from custom actions arrive as `custom` payloads holding our rich
messages; Rasa's own `utter_*` responses arrive as text (and buttons). Any
failure to reach Rasa raises `DialogueUnavailable`, and the caller answers
from the knowledge base instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import TypeAdapter, ValidationError

from bot.messages import Button, ButtonsMessage, RichMessage, TextMessage

_RICH: TypeAdapter[RichMessage] = TypeAdapter(RichMessage)


class DialogueUnavailable(RuntimeError):
    pass


@dataclass
class DialogueReply:
    messages: list[RichMessage]
    meta: dict[str, Any] = field(default_factory=dict)


def to_reply(outputs: list[dict[str, Any]]) -> DialogueReply:
    reply = DialogueReply([])
    for output in outputs:
        custom = output.get("custom")
        if isinstance(custom, dict) and "zhixun_meta" in custom:
            reply.meta.update(custom["zhixun_meta"])
        elif isinstance(custom, dict) and "zhixun" in custom:
            try:
                reply.messages.append(_RICH.validate_python(custom["zhixun"]))
            except ValidationError as exc:
                raise DialogueUnavailable(f"unreadable action reply: {exc}") from exc
        elif output.get("buttons"):
            buttons = [Button(title=b["title"], payload=b.get("payload", "")) for b in output["buttons"]]
            reply.messages.append(ButtonsMessage(text=output.get("text", ""), buttons=buttons))
        elif output.get("text"):
            reply.messages.append(TextMessage(text=output["text"]))
    return reply


class RasaClient:
    def __init__(self, url: str, timeout: float = 15.0):
        self.url = url.rstrip("/")
        self._http = httpx.Client(timeout=httpx.Timeout(timeout, connect=1.0))

    def send(self, conversation_id: str, text: str, metadata: dict[str, Any] | None = None) -> DialogueReply:
        body = {"sender": conversation_id, "message": text, "metadata": metadata or {}}
        try:
            response = self._http.post(f"{self.url}/webhooks/rest/webhook", json=body)
            response.raise_for_status()
            outputs = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise DialogueUnavailable(str(exc)) from exc
        if not isinstance(outputs, list):
            raise DialogueUnavailable("unexpected reply from rasa")
        return to_reply(outputs)

    def reachable(self) -> bool:
        try:
            return self._http.get(f"{self.url}/", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False
