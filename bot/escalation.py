"""Human escalation: conversations waiting for an agent, held by one, and handed back or closed.

One row per escalation in `escalations`. Its status decides who answers the
citizen: `waiting` (queued; the bot only tells the citizen where they stand),
`active` (an agent holds it; the bot is silent), `returned` or `closed` (the
bot answers again). Every change is committed first, then written to the
transcript as a `system` line whose text the citizen may see (details for
agents go in its payload), then announced on the live hub. A restart loses
nothing: the queue is the table, and pages reconnect and read it again.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import JSON, Boolean, DateTime, Integer, String, Text, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from bot.live import QUEUES, LocalHub, conversation_topic
from bot.queues import Queue, QueueConfig
from bot.transcripts import Base, ConversationRow, TranscriptLine, TranscriptStore

Reason = Literal["requested", "complaint", "repeated_miss"]
REASON_TEXT = {
    "requested": "市民要求转人工",
    "complaint": "市民表示不满或投诉",
    "repeated_miss": "机器人连续两次未能解答",
}
OPEN = ("waiting", "active")
MINUTES_PER_CITIZEN = 3  # rough wait per citizen ahead, until there is history to estimate from


class EscalationError(Exception):
    """An agent action that cannot be done now (taken by someone else, not theirs, already closed…)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return value if value is None or value.tzinfo else value.replace(tzinfo=dt.UTC)


class EscalationRow(Base):
    __tablename__ = "escalations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(String(64), index=True)
    reason: Mapped[str] = mapped_column(String(32))
    kb_id: Mapped[str | None] = mapped_column(String(80), nullable=True)
    department: Mapped[str | None] = mapped_column(String(120), nullable=True)
    queue_id: Mapped[str] = mapped_column(String(40), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    agent: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    agent_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    target_agent: Mapped[str | None] = mapped_column(String(64), nullable=True)  # a transfer to one person
    context: Mapped[Any] = mapped_column(JSON, nullable=True)  # what the bot knew: candidates, 情形 answers
    note: Mapped[str] = mapped_column(Text, default="")  # the last transfer note, for the next agent
    after_hours: Mapped[bool] = mapped_column(Boolean, default=False)
    callback_phone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    queued_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))  # entered its current queue
    accepted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    summary: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(40), default="")


class RatingRow(Base):
    __tablename__ = "ratings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    escalation_id: Mapped[int] = mapped_column(Integer, unique=True)
    conversation_id: Mapped[str] = mapped_column(String(64), index=True)
    agent: Mapped[str | None] = mapped_column(String(64), nullable=True)
    score: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Escalation:
    id: int
    conversation_id: str
    reason: str
    kb_id: str | None
    department: str | None
    queue_id: str
    status: str
    agent: str | None
    agent_name: str | None
    target_agent: str | None
    context: Any
    note: str
    after_hours: bool
    callback_phone: str | None
    created_at: dt.datetime
    queued_at: dt.datetime
    accepted_at: dt.datetime | None
    closed_at: dt.datetime | None
    summary: str
    category: str

    @classmethod
    def of(cls, row: EscalationRow) -> Escalation:
        data = {name: getattr(row, name) for name in cls.__dataclass_fields__}
        for name in ("created_at", "queued_at", "accepted_at", "closed_at"):
            data[name] = _utc(data[name])
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        # Shallow on purpose: `context` is already plain JSON, and asdict's deep copy dominated the
        # console's board with a few hundred citizens waiting.
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for name in ("created_at", "queued_at", "accepted_at", "closed_at"):
            data[name] = data[name].isoformat() if data[name] else None
        return data


@dataclass(frozen=True)
class AgentRef:
    """Who acts, as the escalation needs to know them (the console's accounts are richer)."""

    username: str
    display_name: str
    capacity: int = 3


@dataclass(frozen=True)
class QueueStanding:
    position: int  # 1 = next to be served
    minutes: int  # rough wait
    open_now: bool
    queue: Queue


class EscalationService:
    def __init__(
        self,
        engine: Engine,
        transcripts: TranscriptStore,
        queues: QueueConfig,
        hub: LocalHub,
        department_of: Callable[[str], str | None],
        timezone: str = "Asia/Shanghai",
    ):
        self.engine, self.transcripts, self.queues, self.hub = engine, transcripts, queues, hub
        self.department_of = department_of
        self.zone = ZoneInfo(timezone)

    def create_tables(self) -> None:
        Base.metadata.create_all(self.engine)

    # Citizen side -----------------------------------------------------------------------------------

    def request(
        self, conversation_id: str, reason: Reason, kb_id: str | None, context: dict[str, Any] | None = None
    ) -> Escalation | None:
        """Queue the conversation for a person (once: a second request while queued returns the first).
        None if the conversation does not exist (e.g. a Rasa-only test sender)."""
        now = _now()
        department = self.department_of(kb_id) if kb_id else None
        queue = self.queues.route(department)
        local = now.astimezone(self.zone)
        if not queue.is_open(local) and self.queues.general.is_open(local):
            queue = self.queues.general
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            conversation = session.get(ConversationRow, conversation_id)
            if conversation is None:
                return None
            existing = session.scalar(
                select(EscalationRow).where(
                    EscalationRow.conversation_id == conversation_id, EscalationRow.status.in_(OPEN)
                )
            )
            if existing is not None:
                return Escalation.of(existing)
            row = EscalationRow(
                conversation_id=conversation_id,
                reason=reason,
                kb_id=kb_id,
                department=department,
                queue_id=queue.id,
                status="waiting",
                context=context or {},
                note="",
                after_hours=not queue.is_open(local),
                created_at=now,
                queued_at=now,
                summary="",
                category="",
            )
            session.add(row)
            channel = conversation.channel
        escalation = Escalation.of(row)
        self._log(
            escalation,
            f"转人工：已进入「{queue.name}」队列，请稍候",
            "escalation",
            detail={"reason": reason, "reason_text": REASON_TEXT[reason]},
            channel=channel,
        )
        return escalation

    def open_for(self, conversation_id: str) -> Escalation | None:
        with Session(self.engine) as session:
            row = session.scalar(
                select(EscalationRow)
                .where(EscalationRow.conversation_id == conversation_id, EscalationRow.status.in_(OPEN))
                .order_by(EscalationRow.id.desc())
            )
            return Escalation.of(row) if row else None

    def status(self, conversation_id: str) -> str:
        """'escalation_requested' while queued or held by an agent, else 'bot'."""
        return "escalation_requested" if self.open_for(conversation_id) else "bot"

    def standing(self, escalation: Escalation) -> QueueStanding:
        queue = self.queues.get(escalation.queue_id) or self.queues.general
        with Session(self.engine) as session:
            ahead = session.scalar(
                select(func.count())
                .select_from(EscalationRow)
                .where(
                    EscalationRow.queue_id == escalation.queue_id,
                    EscalationRow.status == "waiting",
                    EscalationRow.queued_at < escalation.queued_at,
                )
            )
        position = int(ahead or 0) + 1
        return QueueStanding(
            position, math.ceil(position * MINUTES_PER_CITIZEN), queue.is_open(_now().astimezone(self.zone)), queue
        )

    def citizen_said(self, escalation: Escalation, line: TranscriptLine) -> None:
        self.hub.publish(conversation_topic(escalation.conversation_id), {"type": "line", "line": line.to_json()})

    def leave_callback(self, escalation: Escalation, phone: str) -> Escalation:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            row = session.get_one(EscalationRow, escalation.id)
            row.callback_phone = phone
        updated = Escalation.of(row)
        self._log(updated, "市民留下了回电号码，工作人员上班后回电", "callback", detail={"phone": phone})
        return updated

    def rate(self, escalation_id: int, conversation_id: str, score: int, comment: str = "") -> bool:
        """One rating per closed escalation; False if there is nothing to rate or it was rated already."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            row = session.get(EscalationRow, escalation_id)
            if row is None or row.conversation_id != conversation_id or row.status not in ("closed", "returned"):
                return False
            if session.scalar(select(RatingRow.id).where(RatingRow.escalation_id == escalation_id)):
                return False
            session.add(
                RatingRow(
                    escalation_id=escalation_id,
                    conversation_id=conversation_id,
                    agent=row.agent,
                    score=score,
                    comment=comment,
                    created_at=_now(),
                )
            )
        self._log(Escalation.of(row), f"市民评价：{score}星", "rating", detail={"score": score, "comment": comment})
        return True

    # Agent side -------------------------------------------------------------------------------------

    def get(self, escalation_id: int) -> Escalation | None:
        with Session(self.engine) as session:
            row = session.get(EscalationRow, escalation_id)
            return Escalation.of(row) if row else None

    def waiting(self, queue_ids: Iterable[str] | None = None) -> list[Escalation]:
        """Waiting items, callbacks and messages left out of hours first, then oldest first."""
        query = select(EscalationRow).where(EscalationRow.status == "waiting")
        if queue_ids is not None:
            query = query.where(EscalationRow.queue_id.in_(list(queue_ids)))
        query = query.order_by(EscalationRow.after_hours.desc(), EscalationRow.queued_at)
        with Session(self.engine) as session:
            return [Escalation.of(r) for r in session.scalars(query)]

    def held_by(self, username: str) -> list[Escalation]:
        with Session(self.engine) as session:
            rows = session.scalars(
                select(EscalationRow)
                .where(EscalationRow.agent == username, EscalationRow.status == "active")
                .order_by(EscalationRow.accepted_at)
            )
            return [Escalation.of(r) for r in rows]

    def active(self) -> list[Escalation]:
        with Session(self.engine) as session:
            rows = session.scalars(select(EscalationRow).where(EscalationRow.status == "active"))
            return [Escalation.of(r) for r in rows]

    def accept(self, escalation_id: int, agent: AgentRef) -> Escalation:
        """Take a waiting conversation. Exactly one of several agents pressing 接入 at once gets it."""
        if len(self.held_by(agent.username)) >= agent.capacity:
            raise EscalationError("at_capacity", f"您已同时接待{agent.capacity}位市民，请先结束一个会话。")
        now = _now()
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            taken = session.execute(
                update(EscalationRow)
                .where(
                    EscalationRow.id == escalation_id,
                    EscalationRow.status == "waiting",
                    (EscalationRow.target_agent.is_(None)) | (EscalationRow.target_agent == agent.username),
                )
                .values(status="active", agent=agent.username, agent_name=agent.display_name, accepted_at=now)
            ).rowcount  # type: ignore[attr-defined]  # a CursorResult for UPDATE
            row = session.get(EscalationRow, escalation_id)
        if row is None:
            raise EscalationError("unknown_escalation", "找不到这个会话。")
        if not taken:
            raise EscalationError("already_taken", "这个会话已被其他工作人员接入或已结束。")
        escalation = Escalation.of(row)
        self._log(
            escalation,
            f"工作人员{agent.display_name}已接入，为您服务",
            "accept",
            detail={"agent": agent.username, "agent_name": agent.display_name},
        )
        return escalation

    def say(self, escalation_id: int, agent: AgentRef, text: str, payload: Any = None) -> TranscriptLine:
        escalation = self._held(escalation_id, agent)
        line = self.transcripts.append(
            escalation.conversation_id,
            self._channel(escalation.conversation_id),
            "agent",
            text,
            payload={"agent": agent.username, "agent_name": agent.display_name, **(payload or {})},
        )
        self.hub.publish(conversation_topic(escalation.conversation_id), {"type": "line", "line": line.to_json()})
        return line

    def transfer(
        self,
        escalation_id: int,
        agent: AgentRef,
        *,
        queue_id: str | None = None,
        to_agent: AgentRef | None = None,
        note: str = "",
    ) -> Escalation:
        """Back into a queue (another department's, or the same one for a named colleague) with a note."""
        current = self._held(escalation_id, agent)
        queue = self.queues.get(queue_id or current.queue_id)
        if queue is None:
            raise EscalationError("unknown_queue", "没有这个队列。")
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            row = session.get_one(EscalationRow, escalation_id)
            row.status, row.agent, row.agent_name, row.accepted_at = "waiting", None, None, None
            row.queue_id, row.queued_at, row.note = queue.id, _now(), note
            row.target_agent = to_agent.username if to_agent else None
        escalation = Escalation.of(row)
        target = f"工作人员{to_agent.display_name}" if to_agent else f"「{queue.name}」"
        self._log(
            escalation,
            f"已为您转接至{target}，请稍候",
            "transfer",
            detail={
                "from": agent.username,
                "queue": queue.id,
                "to_agent": to_agent.username if to_agent else None,
                "note": note,
            },
        )
        return escalation

    def return_to_bot(self, escalation_id: int, agent: AgentRef) -> Escalation:
        return self._finish(
            escalation_id, agent, "returned", "", "", "工作人员已结束人工服务，接下来由智能助手为您解答"
        )

    def close(self, escalation_id: int, agent: AgentRef, summary: str, category: str) -> Escalation:
        return self._finish(escalation_id, agent, "closed", summary, category, "本次人工服务已结束，感谢您的耐心")

    def overflow(self) -> list[Escalation]:
        """Move items that waited too long in a department queue to the general queue. Each move is a
        conditional update, so several workers running this at once move (and announce) an item once."""
        now = _now()
        moved = []
        for queue in self.queues.queues.values():
            if queue.overflow_minutes is None or queue.id == self.queues.general_id:
                continue
            cutoff = now - dt.timedelta(minutes=queue.overflow_minutes)
            stale = select(EscalationRow.id).where(
                EscalationRow.queue_id == queue.id,
                EscalationRow.status == "waiting",
                EscalationRow.target_agent.is_(None),
                EscalationRow.queued_at < cutoff,
            )
            with Session(self.engine) as session:
                ids = list(session.scalars(stale))
            for escalation_id in ids:
                with Session(self.engine, expire_on_commit=False) as session, session.begin():
                    done = session.execute(
                        update(EscalationRow)
                        .where(EscalationRow.id == escalation_id, EscalationRow.queue_id == queue.id)
                        .where(EscalationRow.status == "waiting")
                        .values(queue_id=self.queues.general_id)
                    ).rowcount  # type: ignore[attr-defined]  # a CursorResult for UPDATE
                    row = session.get_one(EscalationRow, escalation_id)
                if done:
                    escalation = Escalation.of(row)
                    moved.append(escalation)
                    self._log(
                        escalation,
                        f"为缩短等待，已转由「{self.queues.general.name}」为您服务",
                        "overflow",
                        detail={"from": queue.id},
                    )
        return moved

    # -------------------------------------------------------------------------------------------------

    def _held(self, escalation_id: int, agent: AgentRef) -> Escalation:
        escalation = self.get(escalation_id)
        if escalation is None:
            raise EscalationError("unknown_escalation", "找不到这个会话。")
        if escalation.status != "active" or escalation.agent != agent.username:
            raise EscalationError("not_yours", "这个会话不在您的接待中。")
        return escalation

    def _finish(
        self, escalation_id: int, agent: AgentRef, status: str, summary: str, category: str, notice: str
    ) -> Escalation:
        self._held(escalation_id, agent)
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            row = session.get_one(EscalationRow, escalation_id)
            row.status, row.closed_at, row.summary, row.category = status, _now(), summary, category
        escalation = Escalation.of(row)
        self._log(
            escalation,
            notice,
            "close" if status == "closed" else "return",
            detail={"agent": agent.username, "summary": summary, "category": category, "rate": True},
        )
        return escalation

    def _channel(self, conversation_id: str) -> str:
        with Session(self.engine) as session:
            conversation = session.get(ConversationRow, conversation_id)
            return conversation.channel if conversation else "web"

    def _log(
        self,
        escalation: Escalation,
        text: str,
        event: str,
        *,
        detail: dict[str, Any] | None = None,
        channel: str | None = None,
    ) -> None:
        line = self.transcripts.append(
            escalation.conversation_id,
            channel or self._channel(escalation.conversation_id),
            "system",
            text,
            payload={"event": event, "escalation_id": escalation.id, "queue": escalation.queue_id, **(detail or {})},
            kb_id=escalation.kb_id,
        )
        self.hub.publish(conversation_topic(escalation.conversation_id), {"type": "line", "line": line.to_json()})
        self.hub.publish(QUEUES, {"type": "escalation", "event": event, "escalation": escalation.to_json()})
