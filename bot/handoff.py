"""Handoff requests: the bot gives up on a conversation and asks for a person.

This records the request (durably, before the citizen is told) and writes a
system line into the transcript; queues, routing and the console that act on
it are the escalation module's job.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from sqlalchemy import DateTime, Integer, String, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from bot.transcripts import Base, ConversationRow, TranscriptStore

Reason = Literal["requested", "complaint", "repeated_miss"]
REASON_TEXT = {
    "requested": "市民要求转人工",
    "complaint": "市民表示不满或投诉",
    "repeated_miss": "机器人连续两次未能解答",
}


class HandoffRow(Base):
    __tablename__ = "handoff_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(String(64), index=True)
    reason: Mapped[str] = mapped_column(String(32))
    kb_id: Mapped[str | None] = mapped_column(String(80), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="requested")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class HandoffStore:
    def __init__(self, engine: Engine, transcripts: TranscriptStore):
        self.engine, self.transcripts = engine, transcripts

    def request(self, conversation_id: str, reason: Reason, kb_id: str | None) -> bool:
        """Record a request; False if the conversation does not exist (e.g. a Rasa-only test sender)."""
        with Session(self.engine) as session, session.begin():
            conversation = session.get(ConversationRow, conversation_id)
            if conversation is None:
                return False
            channel = conversation.channel
            session.add(
                HandoffRow(
                    conversation_id=conversation_id, reason=reason, kb_id=kb_id, created_at=dt.datetime.now(dt.UTC)
                )
            )
        self.transcripts.append(
            conversation_id,
            channel,
            "system",
            f"转人工请求：{REASON_TEXT[reason]}",
            payload={"event": "handoff_requested", "reason": reason},
            kb_id=kb_id,
        )
        return True

    def status(self, conversation_id: str) -> str:
        """'escalation_requested' once a person was asked for, else 'bot'."""
        with Session(self.engine) as session:
            found = session.scalar(select(HandoffRow.id).where(HandoffRow.conversation_id == conversation_id).limit(1))
        return "escalation_requested" if found else "bot"
