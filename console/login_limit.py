"""Failed-login limits per username and per client address, kept in the database so all workers share them.

An attempt is recorded *before* the password is checked and removed again if refused, so parallel
guesses cannot slip past the limit between a check and a write; a successful login clears the
username's rows, so what remains are failures.
"""

from __future__ import annotations

import datetime as dt
import math

from sqlalchemy import DateTime, Integer, String, delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.sql.elements import ColumnElement

from bot.transcripts import Base


class LoginAttemptRow(Base):
    __tablename__ = "login_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    client: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)


class LoginBlocked(Exception):
    def __init__(self, retry_after: float):
        super().__init__(f"too many failed logins; retry in {retry_after:.0f} s")
        self.retry_after = retry_after

    @property
    def minutes(self) -> int:
        return max(1, math.ceil(self.retry_after / 60))


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class LoginLimiter:
    def __init__(self, engine: Engine, per_username: int, per_client: int, window: dt.timedelta):
        self.engine, self.per_username, self.per_client, self.window = engine, per_username, per_client, window

    def reserve(self, username: str, client: str) -> None:
        """Count one attempt, or raise LoginBlocked (the attempt not counted) if a limit is reached."""
        username, client = username[:64], client[:64]
        now = dt.datetime.now(dt.UTC)
        since = now - self.window
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            session.execute(delete(LoginAttemptRow).where(LoginAttemptRow.created_at < since))
            row = LoginAttemptRow(username=username, client=client, created_at=now)
            session.add(row)
        with Session(self.engine) as session:
            wait = max(
                self._wait(session, LoginAttemptRow.username == username, self.per_username, row.id, since, now),
                self._wait(session, LoginAttemptRow.client == client, self.per_client, row.id, since, now),
            )
        if wait > 0:
            with Session(self.engine) as session, session.begin():
                session.execute(delete(LoginAttemptRow).where(LoginAttemptRow.id == row.id))
            raise LoginBlocked(wait)

    def clear(self, username: str) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(delete(LoginAttemptRow).where(LoginAttemptRow.username == username[:64]))

    def _wait(
        self,
        session: Session,
        which: ColumnElement[bool],
        limit: int,
        own_id: int,
        since: dt.datetime,
        now: dt.datetime,
    ) -> float:
        """Seconds until fewer than `limit` other attempts remain in the window (0: not blocked)."""
        times = [
            _utc(t)
            for t in session.scalars(
                select(LoginAttemptRow.created_at)
                .where(which, LoginAttemptRow.created_at >= since, LoginAttemptRow.id != own_id)
                .order_by(LoginAttemptRow.created_at)
            )
        ]
        if len(times) < limit:
            return 0.0
        return max(1.0, (times[len(times) - limit] + self.window - now).total_seconds())
