"""Engine creation: SQLite file by default (WAL, so readers never block the writer), PostgreSQL by URL;
and the one schema upgrade step the stores need (adding nullable columns)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import Table, create_engine, event, inspect, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")  # a committed transcript line survives power loss too
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def add_missing_columns(engine: Engine, tables: Iterable[Table]) -> list[str]:
    """Add the nullable columns that tables created by an earlier release lack; returns "table.column" for each.

    `create_all` creates missing tables but never alters existing ones. A missing NOT NULL
    column needs a real migration (existing rows have no value), so it raises instead.
    """
    added: list[str] = []
    quote = engine.dialect.identifier_preparer.quote
    for table in tables:
        inspector = inspect(engine)
        if not inspector.has_table(table.name):
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if not column.nullable or column.primary_key:
                raise RuntimeError(f"{table.name}.{column.name} is missing and NOT NULL: needs a migration")
            kind = column.type.compile(dialect=engine.dialect)
            try:
                with engine.begin() as conn:
                    conn.execute(text(f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(column.name)} {kind}"))
            except DBAPIError:
                # Another worker starting at the same moment may have added it first.
                if column.name not in {c["name"] for c in inspect(engine).get_columns(table.name)}:
                    raise
                continue
            added.append(f"{table.name}.{column.name}")
    return added
