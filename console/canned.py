"""Canned replies (常用语): the team's, shipped in `console/data/canned.yml`, plus each agent's own."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from sqlalchemy import Integer, String, Text, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from bot.transcripts import Base

TEAM_FILE = Path(__file__).resolve().parent / "data" / "canned.yml"


class CannedRow(Base):
    __tablename__ = "canned_replies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    title: Mapped[str] = mapped_column(String(40))
    text: Mapped[str] = mapped_column(Text)


@dataclass(frozen=True)
class Canned:
    id: int | None  # None: a team reply from the shipped file
    title: str
    text: str
    personal: bool


class CannedReplies:
    def __init__(self, engine: Engine, team_file: Path = TEAM_FILE):
        self.engine = engine
        raw = yaml.safe_load(team_file.read_text(encoding="utf-8")) or []
        self.team = [Canned(None, r["title"], r["text"], False) for r in raw]

    def create_tables(self) -> None:
        Base.metadata.create_all(self.engine)

    def for_agent(self, username: str) -> list[Canned]:
        with Session(self.engine) as session:
            rows = session.scalars(select(CannedRow).where(CannedRow.owner == username).order_by(CannedRow.id))
            return [*(Canned(r.id, r.title, r.text, True) for r in rows), *self.team]

    def add(self, username: str, title: str, text: str) -> Canned:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            row = CannedRow(owner=username, title=title, text=text)
            session.add(row)
        return Canned(row.id, row.title, row.text, True)
