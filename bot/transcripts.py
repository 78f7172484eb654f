"""Append-only transcript of every message in and out, written before it is answered or sent."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

Role = Literal["citizen", "bot", "agent", "system"]


class Base(DeclarativeBase):
    pass


class ConversationRow(Base):
    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    sender: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    last_active_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)


class MessageRow(Base):
    __tablename__ = "transcript_messages"
    __table_args__ = (UniqueConstraint("conversation_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    payload: Mapped[Any] = mapped_column(JSON, nullable=True)  # rich replies as sent
    kb_id: Mapped[str | None] = mapped_column(String(80), nullable=True)
    band: Mapped[str | None] = mapped_column(String(16), nullable=True)
    scores: Mapped[Any] = mapped_column(JSON, nullable=True)


@dataclass(frozen=True)
class TranscriptLine:
    conversation_id: str
    seq: int
    created_at: dt.datetime
    channel: str
    role: str
    text: str
    payload: Any = None
    kb_id: str | None = None
    band: str | None = None
    scores: Any = field(default=None)

    def to_json(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "seq": self.seq,
            "created_at": self.created_at.isoformat(),
            "channel": self.channel,
            "role": self.role,
            "text": self.text,
            "payload": self.payload,
            "kb_id": self.kb_id,
            "band": self.band,
            "scores": self.scores,
        }


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _line(row: MessageRow) -> TranscriptLine:
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=dt.UTC)
    return TranscriptLine(
        row.conversation_id,
        row.seq,
        created,
        row.channel,
        row.role,
        row.text,
        row.payload,
        row.kb_id,
        row.band,
        row.scores,
    )


class TranscriptStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def create_tables(self) -> None:
        Base.metadata.create_all(self.engine)

    def open_conversation(self, channel: str, sender: str = "") -> str:
        conversation_id = uuid.uuid4().hex
        now = _now()
        with Session(self.engine) as session, session.begin():
            session.add(
                ConversationRow(
                    id=conversation_id, channel=channel, sender=sender, created_at=now, last_seq=0, last_active_at=now
                )
            )
        return conversation_id

    def exists(self, conversation_id: str) -> bool:
        with Session(self.engine) as session:
            return session.get(ConversationRow, conversation_id) is not None

    def append(
        self,
        conversation_id: str,
        channel: str,
        role: Role,
        text: str,
        *,
        payload: Any = None,
        kb_id: str | None = None,
        band: str | None = None,
        scores: Any = None,
    ) -> TranscriptLine:
        """Commit one line and return it once durable.

        The sequence number comes from an atomic `UPDATE … RETURNING` on the
        conversation row, which serialises concurrent writers to one conversation
        (row lock on PostgreSQL, write lock on SQLite) without gaps or retries.
        """
        now = _now()
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            seq = session.execute(
                update(ConversationRow)
                .where(ConversationRow.id == conversation_id)
                .values(last_seq=ConversationRow.last_seq + 1, last_active_at=now)
                .returning(ConversationRow.last_seq)
            ).scalar_one_or_none()
            if seq is None:
                raise KeyError(conversation_id)
            row = MessageRow(
                conversation_id=conversation_id,
                seq=seq,
                created_at=now,
                channel=channel,
                role=role,
                text=text,
                payload=_jsonable(payload),
                kb_id=kb_id,
                band=band,
                scores=_jsonable(scores),
            )
            session.add(row)
        return _line(row)

    def lines(self, conversation_id: str) -> list[TranscriptLine]:
        with Session(self.engine) as session:
            rows = session.scalars(
                select(MessageRow).where(MessageRow.conversation_id == conversation_id).order_by(MessageRow.seq)
            )
            return [_line(r) for r in rows]

    def export(self, since: dt.datetime | None = None, until: dt.datetime | None = None) -> list[TranscriptLine]:
        query = select(MessageRow).order_by(MessageRow.conversation_id, MessageRow.seq)
        if since is not None:
            query = query.where(MessageRow.created_at >= since)
        if until is not None:
            query = query.where(MessageRow.created_at < until)
        with Session(self.engine) as session:
            return [_line(r) for r in session.scalars(query)]


def _jsonable(value: Any) -> Any:
    return None if value is None else json.loads(json.dumps(value, ensure_ascii=False, default=str))
