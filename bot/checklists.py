"""A citizen's own material checklist: the scenario's rules applied to their answers, frozen when made.

The snapshot is stored, so the printed page and the PDF stay what the citizen
was shown even after the KB entry is edited; it records the entry version it
came from.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from pydantic import BaseModel
from sqlalchemy import JSON, DateTime, String
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from bot.transcripts import Base
from knowledge_base.schema import Entry, SampleField

FORM_LABELS = {
    "original": "原件",
    "copy": "复印件",
    "original_and_copy": "原件及复印件",
    "electronic": "电子材料",
    "form": "申请表（现场或网上填写）",
}


class ChecklistItem(BaseModel):
    name: str
    form: str
    form_label: str
    count: int
    note: str = ""
    sample: str = ""
    sample_fields: list[SampleField] = []
    for_item: str = ""  # title of the component item (一件事), if any


class Checklist(BaseModel):
    id: str
    kb_id: str
    title: str
    situation: str
    answers: dict[str, str]
    materials: list[ChecklistItem]
    notes: list[str]
    legal_basis: list[str]
    where: str
    time_limit: str
    fees: str
    online_link: str
    kb_version: int
    created_at: dt.datetime

    @property
    def heading(self) -> str:
        return f"{self.title}材料清单（{self.situation}）"


def build(entry: Entry, answers: dict[str, str], titles: dict[str, str], kb_version: int) -> Checklist:
    scenario = entry.scenario
    if scenario is None:
        raise ValueError(f"{entry.id} has no scenario")
    materials = [
        ChecklistItem(
            name=m.name,
            form=m.form,
            form_label=FORM_LABELS[m.form],
            count=m.count,
            note=m.note,
            sample=m.sample,
            sample_fields=m.sample_fields,
            for_item=titles.get(m.for_item, ""),
        )
        for m in scenario.checklist(answers)
    ]
    return Checklist(
        id=secrets.token_hex(8),
        kb_id=entry.id,
        title=entry.title,
        situation=scenario.situation(answers),
        answers=answers,
        materials=materials,
        notes=scenario.notes_for(answers),
        legal_basis=entry.legal_basis,
        where=entry.where,
        time_limit=entry.time_limit,
        fees=entry.fees,
        online_link=entry.online_link,
        kb_version=kb_version,
        created_at=dt.datetime.now(dt.UTC),
    )


class ChecklistRow(Base):
    __tablename__ = "checklists"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(64), index=True)
    kb_id: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    data: Mapped[Any] = mapped_column(JSON)


class ChecklistStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def save(self, checklist: Checklist, conversation_id: str) -> None:
        with Session(self.engine) as session, session.begin():
            session.add(
                ChecklistRow(
                    id=checklist.id,
                    conversation_id=conversation_id,
                    kb_id=checklist.kb_id,
                    created_at=checklist.created_at,
                    data=checklist.model_dump(mode="json"),
                )
            )

    def get(self, checklist_id: str) -> Checklist | None:
        with Session(self.engine) as session:
            row = session.get(ChecklistRow, checklist_id)
            return Checklist.model_validate(row.data) if row else None
