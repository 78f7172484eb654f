"""Server-side console sessions: the cookie holds a random token, the database only its SHA-256.

A session ends after `idle` without a request (sliding) or `absolute` after login, whichever is first.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import DateTime, ForeignKey, String, delete
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from bot.transcripts import Base

# A request refreshes last_seen at most this often (or a 20th of the idle timeout), so reads do not each
# cost a write.
TOUCH_EVERY = dt.timedelta(seconds=15)


class SessionRow(Base):
    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the cookie's token
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)


@dataclass(frozen=True)
class ConsoleSession:
    id: str
    account_id: int
    csrf_token: str
    created_at: dt.datetime
    last_seen: dt.datetime
    expires_at: dt.datetime


def token_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)  # SQLite returns naive UTC


def _session(row: SessionRow) -> ConsoleSession:
    return ConsoleSession(
        row.id, row.account_id, row.csrf_token, _utc(row.created_at), _utc(row.last_seen), _utc(row.expires_at)
    )


class SessionStore:
    def __init__(self, engine: Engine, idle: dt.timedelta, absolute: dt.timedelta):
        self.engine, self.idle, self.absolute = engine, idle, absolute
        self.touch_every = min(TOUCH_EVERY, idle / 20)

    def create(self, account_id: int) -> tuple[str, ConsoleSession]:
        """A new session; returns the raw token (for the cookie only) and the session."""
        token = secrets.token_urlsafe(32)
        now = dt.datetime.now(dt.UTC)
        row = SessionRow(
            id=token_id(token),
            account_id=account_id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen=now,
            expires_at=now + min(self.idle, self.absolute),
        )
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            session.execute(delete(SessionRow).where(SessionRow.expires_at <= now))
            session.add(row)
        return token, _session(row)

    def resolve(self, token: str) -> ConsoleSession | None:
        """The live session for a cookie token, its idle deadline moved on; None if unknown or expired."""
        now = dt.datetime.now(dt.UTC)
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            row = session.get(SessionRow, token_id(token))
            if row is None:
                return None
            deadline = _utc(row.created_at) + self.absolute
            if now >= min(_utc(row.expires_at), deadline):
                session.delete(row)
                return None
            if now - _utc(row.last_seen) >= self.touch_every:
                row.last_seen = now
                row.expires_at = min(now + self.idle, deadline)
            return _session(row)

    def delete(self, token: str) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(delete(SessionRow).where(SessionRow.id == token_id(token)))

    def delete_for_account(self, account_id: int) -> None:
        """End every session of an account (after a password change or deactivation)."""
        with Session(self.engine) as session, session.begin():
            session.execute(delete(SessionRow).where(SessionRow.account_id == account_id))
