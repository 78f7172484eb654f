"""Messages to citizens outside the chat (SMS, WeChat template messages) through one interface.

    notifier.send("sms", "13800138000", "video_invite", {"url": …, "minutes": 15})

The default `OutboxNotifier` only writes the message to the `outbox` table, in its own commit;
a gateway process (the SMS provider's, or the WeChat connector) delivers pending rows and marks them
sent or failed. So the app never waits on a provider, and nothing is lost when one is down.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sqlalchemy import JSON, DateTime, Integer, String, Text, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from bot.transcripts import Base

Channel = Literal["sms", "wechat"]
CHANNELS: tuple[Channel, ...] = ("sms", "wechat")


class Notifier(Protocol):
    def send(self, channel: Channel, to: str, template: str, params: dict[str, Any]) -> int:
        """Queue one message; returns its outbox id (or the provider's id as an int)."""
        ...


class OutboxRow(Base):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(16), index=True)
    to: Mapped[str] = mapped_column(String(128))  # phone number, or WeChat openid
    template: Mapped[str] = mapped_column(String(80))
    params: Mapped[Any] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True, default="pending")  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    channel: str
    to: str
    template: str
    params: Any
    status: str
    attempts: int
    created_at: dt.datetime


def _message(row: OutboxRow) -> OutboxMessage:
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=dt.UTC)
    return OutboxMessage(row.id, row.channel, row.to, row.template, row.params, row.status, row.attempts, created)


class OutboxNotifier:
    """`Notifier` that leaves delivery to a gateway reading the `outbox` table."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def create_tables(self) -> None:
        Base.metadata.create_all(self.engine, tables=[Base.metadata.tables["outbox"]])

    def send(self, channel: Channel, to: str, template: str, params: dict[str, Any]) -> int:
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}")
        row = OutboxRow(
            channel=channel,
            to=to,
            template=template,
            params=params,
            status="pending",
            attempts=0,
            error="",
            created_at=dt.datetime.now(dt.UTC),
        )
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            session.add(row)
        return row.id

    # The gateway's side ------------------------------------------------------------------------------

    def pending(self, channel: Channel | None = None, limit: int = 100) -> list[OutboxMessage]:
        query = select(OutboxRow).where(OutboxRow.status == "pending").order_by(OutboxRow.id).limit(limit)
        if channel is not None:
            query = query.where(OutboxRow.channel == channel)
        with Session(self.engine) as session:
            return [_message(row) for row in session.scalars(query)]

    def mark(self, message_id: int, *, sent: bool, error: str = "") -> None:
        values: dict[str, Any] = {"attempts": OutboxRow.attempts + 1, "error": error}
        if sent:
            values.update(status="sent", sent_at=dt.datetime.now(dt.UTC))
        with Session(self.engine) as session, session.begin():
            session.execute(update(OutboxRow).where(OutboxRow.id == message_id).values(**values))
