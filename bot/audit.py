"""Append-only audit log: who viewed, exported, edited or purged what, when and from where.

Rows are only ever inserted; a database trigger rejects UPDATE and DELETE, so the
application (or a careless script) cannot rewrite history. Purging transcripts keeps them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any, Literal

from sqlalchemy import JSON, DateTime, Integer, String, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

Action = Literal["view", "export", "edit", "purge", "login"]

_APPEND_ONLY = {
    "sqlite": [
        """CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
           BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
        """CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
           BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
    ],
    "postgresql": [
        """CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$""",
        """DO $$ BEGIN
             IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'audit_log_append_only') THEN
               CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
               FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
             END IF;
           END $$""",
    ],
}


class AuditBase(DeclarativeBase):
    pass


class AuditRow(AuditBase):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    actor: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(32), index=True)
    target: Mapped[str] = mapped_column(String(160), index=True)  # e.g. conversation:<id>, transcripts
    detail: Mapped[Any] = mapped_column(JSON, nullable=True)
    client: Mapped[str | None] = mapped_column(String(128), nullable=True)  # client address, or cli:<host>


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: dt.datetime
    actor: str
    role: str
    action: str
    target: str
    detail: Any
    client: str | None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "at": self.at.isoformat()}


def _entry(row: AuditRow) -> AuditEntry:
    at = row.at.astimezone(dt.UTC) if row.at.tzinfo else row.at.replace(tzinfo=dt.UTC)
    return AuditEntry(row.id, at, row.actor, row.role, row.action, row.target, row.detail, row.client)


class AuditLog:
    def __init__(self, engine: Engine):
        self.engine = engine

    def create_tables(self) -> None:
        AuditBase.metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            for statement in _APPEND_ONLY.get(self.engine.dialect.name, []):
                conn.execute(text(statement))

    def record(
        self,
        actor: str,
        action: Action,
        target: str,
        *,
        role: str,
        detail: Any = None,
        client: str | None = None,
        session: Session | None = None,
    ) -> None:
        """Write one entry; inside `session` (committed with the caller's change) when given."""
        row = AuditRow(
            at=dt.datetime.now(dt.UTC),
            actor=actor,
            role=role,
            action=action,
            target=target,
            detail=detail,
            client=client,
        )
        if session is not None:
            session.add(row)
            return
        with Session(self.engine) as own, own.begin():
            own.add(row)

    def entries(
        self,
        *,
        action: Action | None = None,
        target: str | None = None,
        since: dt.datetime | None = None,
    ) -> list[AuditEntry]:
        """Matching entries, oldest first."""
        query = select(AuditRow).order_by(AuditRow.id)
        if action is not None:
            query = query.where(AuditRow.action == action)
        if target is not None:
            query = query.where(AuditRow.target == target)
        if since is not None:
            query = query.where(AuditRow.at >= since)
        with Session(self.engine) as session:
            return [_entry(row) for row in session.scalars(query)]
