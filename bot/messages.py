"""Rich messages: what the bot says, before a channel degrades it to what it can show."""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from bot.checklists import Checklist
from knowledge_base.schema import Component, Entry, Image, Material, Steps


class Button(BaseModel):
    title: str
    payload: str = ""  # sent back verbatim when pressed, e.g. '/ask_service{"kb_id":"passport.renew"}'
    url: str = ""  # a link button (e.g. apply online, print the checklist) opens this instead


def payload(intent: str, **entities: str) -> str:
    """A button payload in Rasa's format: the intent and entities, so NLU is skipped when pressed."""
    return f"/{intent}{json.dumps(entities, ensure_ascii=False, separators=(',', ':'))}" if entities else f"/{intent}"


_PAYLOAD = re.compile(r"^/(?P<intent>[a-z_]+)(?P<entities>\{.*\})?$", re.S)


def parse_payload(text: str) -> tuple[str, dict[str, str]] | None:
    """The intent and entities of a button payload, or None if `text` is not one."""
    match = _PAYLOAD.match(text.strip())
    if not match:
        return None
    try:
        entities = json.loads(match.group("entities") or "{}")
    except json.JSONDecodeError:
        return None
    if not isinstance(entities, dict):
        return None
    return match.group("intent"), {str(k): str(v) for k, v in entities.items()}


class TextMessage(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ButtonsMessage(BaseModel):
    type: Literal["buttons"] = "buttons"
    text: str
    buttons: list[Button]


class RelatedItem(BaseModel):
    kb_id: str
    title: str


class KBCard(BaseModel):
    """One service item's answer: everything a citizen needs to go and do it."""

    type: Literal["kb_card"] = "kb_card"
    kb_id: str
    title: str
    department: str
    summary: str
    conditions: list[str]
    materials: list[Material]
    steps: Steps
    where: str
    hours: str
    fees: str
    time_limit: str
    online_link: str
    legal_basis: list[str]
    local_note: str
    last_reviewed: str
    images: list[Image]
    components: list[Component]
    joint_application: str
    related: list[RelatedItem]

    @classmethod
    def from_entry(cls, entry: Entry, titles: dict[str, str]) -> KBCard:
        data = entry.model_dump(mode="json", exclude={"id", "questions", "related", "theme", "audience"})
        related = [RelatedItem(kb_id=r, title=titles[r]) for r in entry.related if r in titles]
        return cls(kb_id=entry.id, related=related, **data)


class ChecklistCard(BaseModel):
    """A citizen's own material checklist, with links to its print page and PDF."""

    type: Literal["checklist"] = "checklist"
    checklist: Checklist
    print_url: str
    pdf_url: str


RichMessage = Annotated[TextMessage | ButtonsMessage | KBCard | ChecklistCard, Field(discriminator="type")]
