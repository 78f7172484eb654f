"""Append-only transcript of every message in and out, written before it is answered or sent.

Each conversation's lines form a hash chain: a line's `hash` is sha256 over the previous
line's hash and the line's canonical JSON, and the conversation row keeps the last seq and
hash, so `verify` finds an edited, deleted (also the last) or re-linked line.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from dataclasses import dataclass, field, replace
from itertools import groupby
from typing import Any, Literal, cast

from sqlalchemy import (
    JSON,
    CursorResult,
    DateTime,
    Delete,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    delete,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from bot.audit import AuditLog
from bot.privacy import mask_text, mask_value
from zhixun.database import add_missing_columns

Role = Literal["citizen", "bot", "agent", "system"]
ProblemKind = Literal["edited", "deleted", "broken_link", "unchained", "tail"]


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
    last_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)


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
    # NULL only on lines written before chaining (a prefix of their conversation).
    prev_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    hash: Mapped[str | None] = mapped_column(String(64), nullable=True)


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
    prev_hash: str | None = None
    hash: str | None = None

    def _stored(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "seq": self.seq,
            "created_at": self.created_at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
            "channel": self.channel,
            "role": self.role,
            "text": self.text,
            "payload": self.payload,
            "kb_id": self.kb_id,
            "band": self.band,
            "scores": self.scores,
        }

    def canonical(self) -> str:
        """The hashed form; identical after a round trip through SQLite or PostgreSQL."""
        return json.dumps(self._stored(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))

    def computed_hash(self) -> str:
        return hashlib.sha256(((self.prev_hash or "") + self.canonical()).encode("utf-8")).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {**self._stored(), "prev_hash": self.prev_hash, "hash": self.hash}

    def masked(self) -> TranscriptLine:
        """A copy with ID and phone numbers masked; its hashes still name the original line."""
        return replace(self, text=mask_text(self.text), payload=mask_value(self.payload))


@dataclass(frozen=True)
class Conversation:
    id: str
    channel: str
    sender: str
    created_at: dt.datetime
    last_active_at: dt.datetime
    last_seq: int
    last_hash: str | None


@dataclass(frozen=True)
class ChainProblem:
    conversation_id: str
    seq: int
    kind: ProblemKind
    detail: str

    def __str__(self) -> str:
        return f"conversation {self.conversation_id} seq {self.seq}: {self.kind}: {self.detail}"


@dataclass
class ChainReport:
    conversations: int = 0
    lines: int = 0
    legacy_lines: int = 0  # written before chaining: unverifiable, but not a failure
    problems: list[ChainProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Purged:
    conversations: int
    lines: int


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands back naive UTC, PostgreSQL the session's time zone."""
    return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _line(row: MessageRow) -> TranscriptLine:
    return TranscriptLine(
        row.conversation_id,
        row.seq,
        _utc(row.created_at),
        row.channel,
        row.role,
        row.text,
        row.payload,
        row.kb_id,
        row.band,
        row.scores,
        row.prev_hash,
        row.hash,
    )


def _missing(first: int, last: int) -> str:
    return f"line {first} is missing" if first == last else f"lines {first}–{last} are missing"


def _check(head: tuple[str, int, str | None], lines: list[TranscriptLine], report: ChainReport) -> None:
    conversation_id, last_seq, last_hash = head
    problems = report.problems

    def problem(seq: int, kind: ProblemKind, detail: str) -> None:
        problems.append(ChainProblem(conversation_id, seq, kind, detail))

    report.conversations += 1
    report.lines += len(lines)
    expected_seq, prev, chained, linked = 1, None, False, True
    for line in lines:
        if line.seq != expected_seq:
            problem(expected_seq, "deleted", _missing(expected_seq, line.seq - 1))
            linked = False  # the next link necessarily breaks; the gap is the problem
        expected_seq = line.seq + 1
        if line.hash is None:
            if chained:
                problem(line.seq, "unchained", "no hash on a line after chained lines")
                linked = False
            else:
                report.legacy_lines += 1
            continue
        if line.computed_hash() != line.hash:
            problem(line.seq, "edited", "the line's content does not match its hash")
        elif linked and line.prev_hash != prev:
            problem(line.seq, "broken_link", "prev_hash is not the previous line's hash (that line was altered)")
        prev, chained, linked = line.hash, True, True
    last = lines[-1].seq if lines else 0
    if last < last_seq:
        problem(last + 1, "deleted", f"{_missing(last + 1, last_seq)} (the conversation records {last_seq} lines)")
    elif last > last_seq:
        problem(last_seq + 1, "tail", f"lines after the conversation's recorded last line {last_seq}")
    elif last_hash != prev:
        problem(last, "tail", "the conversation's last_hash is not its last line's hash")


class TranscriptStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def create_tables(self) -> None:
        Base.metadata.create_all(self.engine)
        add_missing_columns(self.engine, [Base.metadata.tables[t] for t in ("conversations", "transcript_messages")])

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

    def conversation(self, conversation_id: str) -> Conversation | None:
        with Session(self.engine) as session:
            row = session.get(ConversationRow, conversation_id)
            if row is None:
                return None
            return Conversation(
                row.id,
                row.channel,
                row.sender,
                _utc(row.created_at),
                _utc(row.last_active_at),
                row.last_seq,
                row.last_hash,
            )

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

        The sequence number and the previous hash come from an atomic `UPDATE … RETURNING`
        on the conversation row, which serialises concurrent writers to one conversation
        (row lock on PostgreSQL, write lock on SQLite) until this transaction has stored the
        line and the new last_hash: no gaps, no forks, no retries.
        """
        with Session(self.engine) as session, session.begin():
            head = session.execute(
                update(ConversationRow)
                .where(ConversationRow.id == conversation_id)
                .values(last_seq=ConversationRow.last_seq + 1)
                .returning(ConversationRow.last_seq, ConversationRow.last_hash)
            ).one_or_none()
            if head is None:
                raise KeyError(conversation_id)
            seq, prev_hash = head
            now = _now()  # taken under the lock, so times rise with seq
            line = TranscriptLine(
                conversation_id,
                seq,
                now,
                channel,
                role,
                text,
                _jsonable(payload),
                kb_id,
                band,
                _jsonable(scores),
                prev_hash,
            )
            line = replace(line, hash=line.computed_hash())
            session.add(
                MessageRow(
                    conversation_id=conversation_id,
                    seq=seq,
                    created_at=now,
                    channel=channel,
                    role=role,
                    text=text,
                    payload=line.payload,
                    kb_id=kb_id,
                    band=band,
                    scores=line.scores,
                    prev_hash=prev_hash,
                    hash=line.hash,
                )
            )
            session.execute(
                update(ConversationRow)
                .where(ConversationRow.id == conversation_id)
                .values(last_hash=line.hash, last_active_at=now)
            )
        return line

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

    def verify(self, conversation_id: str | None = None) -> ChainReport:
        """Check the hash chain of one conversation (KeyError if unknown) or of all of them.

        One statement reads conversations and lines together, so a conversation being written
        meanwhile is seen consistently (its last_seq/last_hash match the lines read).
        """
        query = (
            select(ConversationRow.id, ConversationRow.last_seq, ConversationRow.last_hash, MessageRow)
            .outerjoin(MessageRow, MessageRow.conversation_id == ConversationRow.id)
            .order_by(ConversationRow.id, MessageRow.seq)
            .execution_options(yield_per=1000)
        )
        if conversation_id is not None:
            query = query.where(ConversationRow.id == conversation_id)
        report = ChainReport()
        with Session(self.engine) as session:
            for (cid, last_seq, last_hash), rows in groupby(session.execute(query), key=lambda row: tuple(row[:3])):
                _check((cid, last_seq, last_hash), [_line(row[3]) for row in rows if row[3] is not None], report)
        if conversation_id is not None and not report.conversations:
            raise KeyError(conversation_id)
        return report

    def purge(self, before: dt.datetime, audit: AuditLog, actor: str, *, client: str | None = None) -> Purged:
        """Delete whole conversations last active before `before`, with their lines; audited in the same commit.

        Whole conversations go, so every remaining chain stays complete; the audit log is kept.
        """
        conversations = lines = 0
        with Session(self.engine) as session, session.begin():
            while True:
                ids = session.scalars(
                    select(ConversationRow.id)
                    .where(ConversationRow.last_active_at < before)
                    .order_by(ConversationRow.id)
                    .limit(500)
                    .with_for_update()
                ).all()
                if not ids:
                    break
                # Re-checked under the write lock: a conversation revived meanwhile (SQLite) is kept whole.
                old = (ConversationRow.id.in_(ids), ConversationRow.last_active_at < before)
                lines += _delete(
                    session,
                    delete(MessageRow).where(MessageRow.conversation_id.in_(select(ConversationRow.id).where(*old))),
                )
                conversations += _delete(session, delete(ConversationRow).where(*old))
            audit.record(
                actor,
                "purge",
                "transcripts",
                role="operator",
                detail={"before": before.isoformat(), "conversations": conversations, "lines": lines},
                client=client,
                session=session,
            )
        return Purged(conversations, lines)


def _delete(session: Session, statement: Delete) -> int:
    result = session.execute(statement, execution_options={"synchronize_session": False})
    return cast(CursorResult[Any], result).rowcount


def _jsonable(value: Any) -> Any:
    return None if value is None else json.loads(json.dumps(value, ensure_ascii=False, default=str))
