"""SQL storage of KB entries, with every version kept (who changed what, when).

The current row holds the live entry; `kb_entry_versions` is append-only
history. `revision()` changes whenever any entry changes, which is how the
retrieval index (in every app worker) notices it must rebuild.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from knowledge_base.schema import Entry


class Base(DeclarativeBase):
    pass


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class EntryRow(Base):
    __tablename__ = "kb_entries"

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    data: Mapped[dict] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated_by: Mapped[str] = mapped_column(String(80))


class EntryVersionRow(Base):
    __tablename__ = "kb_entry_versions"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    entry_id: Mapped[str] = mapped_column(ForeignKey("kb_entries.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    data: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(80))
    note: Mapped[str] = mapped_column(Text, default="")


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int
    unchanged: int


@dataclass(frozen=True)
class EntryVersion:
    version: int
    created_at: dt.datetime
    created_by: str
    note: str
    entry: Entry


def _canonical(entry: Entry) -> dict:
    return json.loads(entry.model_dump_json())


class KBStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def create_tables(self) -> None:
        Base.metadata.create_all(self.engine)

    def save(self, entries: list[Entry], author: str, note: str = "") -> ImportResult:
        """Insert or update entries in one transaction; unchanged entries get no new version."""
        created = updated = unchanged = 0
        now = _now()
        with Session(self.engine) as session, session.begin():
            existing = {row.id: row for row in session.scalars(select(EntryRow))}
            for entry in entries:
                data = _canonical(entry)
                row = existing.get(entry.id)
                if row is not None and row.data == data:
                    unchanged += 1
                    continue
                if row is None:
                    row = EntryRow(id=entry.id, data=data, version=1, updated_at=now, updated_by=author)
                    session.add(row)
                    session.flush()
                    created += 1
                else:
                    row.data, row.version, row.updated_at, row.updated_by = data, row.version + 1, now, author
                    updated += 1
                session.add(
                    EntryVersionRow(
                        entry_id=entry.id, version=row.version, data=data, created_at=now, created_by=author, note=note
                    )
                )
        return ImportResult(created, updated, unchanged)

    def all(self) -> list[Entry]:
        with Session(self.engine) as session:
            rows = session.scalars(select(EntryRow).order_by(EntryRow.id))
            return [Entry.model_validate(row.data) for row in rows]

    def get(self, entry_id: str) -> Entry | None:
        with Session(self.engine) as session:
            row = session.get(EntryRow, entry_id)
            return Entry.model_validate(row.data) if row else None

    def history(self, entry_id: str) -> list[EntryVersion]:
        with Session(self.engine) as session:
            rows = session.scalars(
                select(EntryVersionRow).where(EntryVersionRow.entry_id == entry_id).order_by(EntryVersionRow.version)
            )
            return [
                EntryVersion(r.version, r.created_at, r.created_by, r.note, Entry.model_validate(r.data)) for r in rows
            ]

    def last_authors(self) -> dict[str, str]:
        """Who made each entry's current version."""
        with Session(self.engine) as session:
            return {entry_id: author for entry_id, author in session.execute(select(EntryRow.id, EntryRow.updated_by))}

    def version(self, entry_id: str) -> int:
        """The entry's current version number (0 if it does not exist)."""
        with Session(self.engine) as session:
            row = session.get(EntryRow, entry_id)
            return row.version if row else 0

    def revision(self) -> int:
        """A number that grows with every saved change (the newest version row)."""
        with Session(self.engine) as session:
            return session.scalar(select(func.coalesce(func.max(EntryVersionRow.seq), 0))) or 0

    def count(self) -> int:
        with Session(self.engine) as session:
            return session.scalar(select(func.count()).select_from(EntryRow)) or 0
