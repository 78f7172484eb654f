"""Rich messages: what the bot says, before a channel degrades it to what it can show."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from knowledge_base.schema import Component, Entry, Image, Material, Steps


class Button(BaseModel):
    title: str
    payload: str  # sent back verbatim when pressed, e.g. "kb:passport.renew"


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


RichMessage = Annotated[TextMessage | ButtonsMessage | KBCard, Field(discriminator="type")]
