"""Window appointments (微预约): halls, working days, slots with capacity, book and cancel.

Capacity is enforced by one conditional `UPDATE … SET booked = booked + 1
WHERE booked < capacity` on the slot's row, so parallel bookings of the last
place cannot both succeed, on SQLite or PostgreSQL, in one worker or many.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import chinese_calendar
import yaml
from sqlalchemy import Date, DateTime, Integer, String, and_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from bot.transcripts import Base

HALLS_FILE = Path(__file__).resolve().parent / "data" / "halls.yml"
WEEKDAYS = "一二三四五六日"
ANY_DEPARTMENT = "*"


def is_workday(day: dt.date) -> bool:
    """Official working days, holidays and make-up days (调休) included; plain weekdays past the calendar's data."""
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        return day.weekday() < 5


def day_label(day: dt.date) -> str:
    return f"{day.month}月{day.day}日（周{WEEKDAYS[day.weekday()]}）"


@dataclass(frozen=True)
class Hall:
    id: str
    name: str
    address: str
    hours: list[tuple[str, str]]
    windows: dict[str, int]

    def pool_for(self, department: str) -> tuple[str, int] | None:
        """Which windows serve an item's department here: its own, else the general window."""
        for part in department.split("/"):
            for key, count in self.windows.items():
                if key != ANY_DEPARTMENT and (key in part or part in key) and count > 0:
                    return key, count
        count = self.windows.get(ANY_DEPARTMENT, 0)
        return (ANY_DEPARTMENT, count) if count > 0 else None


@dataclass(frozen=True)
class Slot:
    start: str
    end: str
    free: int

    @property
    def label(self) -> str:
        return f"{self.start}–{self.end}"


@dataclass(frozen=True)
class Booking:
    id: str
    code: str
    conversation_id: str
    kb_id: str
    hall: Hall
    day: dt.date
    start: str
    end: str
    status: str

    def summary(self) -> str:
        return f"{day_label(self.day)} {self.start}–{self.end}，{self.hall.name}（{self.hall.address}），预约码 {self.code}"


class SlotRow(Base):
    __tablename__ = "appointment_slots"

    hall_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    pool: Mapped[str] = mapped_column(String(80), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    start: Mapped[str] = mapped_column(String(5), primary_key=True)
    booked: Mapped[int] = mapped_column(Integer, default=0)


class AppointmentRow(Base):
    __tablename__ = "appointments"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    code: Mapped[str] = mapped_column(String(8), index=True)
    conversation_id: Mapped[str] = mapped_column(String(64), index=True)
    kb_id: Mapped[str] = mapped_column(String(80))
    hall_id: Mapped[str] = mapped_column(String(40))
    pool: Mapped[str] = mapped_column(String(80))
    day: Mapped[dt.date] = mapped_column(Date)
    start: Mapped[str] = mapped_column(String(5))
    status: Mapped[str] = mapped_column(String(16), default="booked")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Appointments:
    def __init__(self, engine: Engine, halls_file: Path = HALLS_FILE, timezone: str = "Asia/Shanghai"):
        self.engine = engine
        config = yaml.safe_load(halls_file.read_text(encoding="utf-8"))
        self.slot_minutes = int(config.get("slot_minutes", 30))
        self.days_ahead = int(config.get("days_ahead", 7))
        self.halls = {
            h["id"]: Hall(h["id"], h["name"], h["address"], [tuple(p) for p in h["hours"]], dict(h["windows"]))
            for h in config["halls"]
        }
        self.zone = ZoneInfo(timezone)

    def now(self) -> dt.datetime:
        return dt.datetime.now(self.zone)

    def halls_for(self, department: str) -> list[Hall]:
        return [h for h in self.halls.values() if h.pool_for(department)]

    def days(self) -> list[dt.date]:
        today = self.now().date()
        candidates = (today + dt.timedelta(days=n) for n in range(self.days_ahead + 1))
        return [d for d in candidates if is_workday(d)]

    def slots(self, hall: Hall, department: str, day: dt.date) -> list[Slot]:
        """Slots still bookable: not in the past, with a free window."""
        found = hall.pool_for(department)
        if found is None or not is_workday(day):
            return []
        pool, capacity = found
        with Session(self.engine) as session:
            rows = session.execute(
                select(SlotRow.start, SlotRow.booked).where(
                    and_(SlotRow.hall_id == hall.id, SlotRow.pool == pool, SlotRow.day == day)
                )
            )
            booked = {start: count for start, count in rows}
        now = self.now()
        free = []
        for start, end in self._starts(hall):
            begins = dt.datetime.combine(day, dt.time.fromisoformat(start), self.zone)
            left = capacity - booked.get(start, 0)
            if begins > now and left > 0:
                free.append(Slot(start, end, left))
        return free

    def _starts(self, hall: Hall) -> list[tuple[str, str]]:
        out = []
        step = dt.timedelta(minutes=self.slot_minutes)
        for opens, closes in hall.hours:
            t = dt.datetime.combine(dt.date.min, dt.time.fromisoformat(opens))
            end = dt.datetime.combine(dt.date.min, dt.time.fromisoformat(closes))
            while t + step <= end:
                out.append((t.strftime("%H:%M"), (t + step).strftime("%H:%M")))
                t += step
        return out

    def book(
        self, conversation_id: str, kb_id: str, department: str, hall_id: str, day: dt.date, start: str
    ) -> Booking | None:
        """Take one place in the slot, or None if it is full (or not a real slot)."""
        hall = self.halls.get(hall_id)
        found = hall.pool_for(department) if hall else None
        if hall is None or found is None or start not in dict(self._starts(hall)) or not is_workday(day):
            return None
        pool, capacity = found
        key = {"hall_id": hall.id, "pool": pool, "day": day, "start": start}
        insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            session.execute(insert(SlotRow).values(**key, booked=0).on_conflict_do_nothing())
            taken = session.execute(
                update(SlotRow)
                .where(and_(*(getattr(SlotRow, k) == v for k, v in key.items())), SlotRow.booked < capacity)
                .values(booked=SlotRow.booked + 1)
            )
            if taken.rowcount != 1:  # type: ignore[attr-defined]  # a CursorResult for UPDATE
                return None
            row = AppointmentRow(
                id=secrets.token_hex(8),
                code=f"{secrets.randbelow(10**6):06d}",
                conversation_id=conversation_id,
                kb_id=kb_id,
                hall_id=hall.id,
                pool=pool,
                day=day,
                start=start,
                status="booked",
                created_at=dt.datetime.now(dt.UTC),
            )
            session.add(row)
        return self._booking(row)

    def cancel(self, conversation_id: str, booking_id: str) -> Booking | None:
        """Cancel one of this conversation's active bookings and free its place."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            row = session.get(AppointmentRow, booking_id)
            if row is None or row.conversation_id != conversation_id or row.status != "booked":
                return None
            row.status, row.cancelled_at = "cancelled", dt.datetime.now(dt.UTC)
            session.execute(
                update(SlotRow)
                .where(
                    and_(
                        SlotRow.hall_id == row.hall_id,
                        SlotRow.pool == row.pool,
                        SlotRow.day == row.day,
                        SlotRow.start == row.start,
                    )
                )
                .values(booked=SlotRow.booked - 1)
            )
        return self._booking(row)

    def active(self, conversation_id: str) -> list[Booking]:
        today = self.now().date()
        with Session(self.engine) as session:
            rows = session.scalars(
                select(AppointmentRow)
                .where(
                    AppointmentRow.conversation_id == conversation_id,
                    AppointmentRow.status == "booked",
                    AppointmentRow.day >= today,
                )
                .order_by(AppointmentRow.day, AppointmentRow.start)
            )
            return [self._booking(r) for r in rows]

    def _booking(self, row: AppointmentRow) -> Booking:
        hall = self.halls[row.hall_id]
        end = dict(self._starts(hall)).get(row.start, row.start)
        return Booking(row.id, row.code, row.conversation_id, row.kb_id, hall, row.day, row.start, end, row.status)
