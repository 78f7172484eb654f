"""Agent queues: which queue a conversation goes to, and when each queue is staffed.

Read from `bot/data/queues.yml` (setting `escalation.queues_file`); see that file for the rules.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import yaml

from bot.appointments import is_workday

QUEUES_FILE = Path(__file__).resolve().parent / "data" / "queues.yml"
Span = tuple[dt.time, dt.time]


def _spans(raw: list[list[str]] | None) -> tuple[Span, ...]:
    return tuple((dt.time.fromisoformat(start), dt.time.fromisoformat(end)) for start, end in raw or [])


def _text(spans: tuple[Span, ...]) -> str:
    return "、".join(f"{a:%H:%M}–{b:%H:%M}" for a, b in spans)


@dataclass(frozen=True)
class Queue:
    id: str
    name: str
    departments: tuple[str, ...]
    hours: tuple[Span, ...]
    weekend_hours: tuple[Span, ...] = ()
    overflow_minutes: int | None = None

    def serves(self, department: str) -> bool:
        return any(key in part for part in department.split("/") for key in self.departments)

    def is_open(self, at: dt.datetime) -> bool:
        spans = self.hours if is_workday(at.date()) else self.weekend_hours
        return any(start <= at.time() < end for start, end in spans)

    def hours_text(self) -> str:
        text = f"工作日 {_text(self.hours)}"
        return text + (f"，节假日 {_text(self.weekend_hours)}" if self.weekend_hours else "，节假日休息")

    def next_opening(self, at: dt.datetime) -> dt.datetime:
        """When agents are next on duty, from `at` (a timezone-aware local time)."""
        for days in range(0, 15):
            day = at.date() + dt.timedelta(days=days)
            spans = self.hours if is_workday(day) else self.weekend_hours
            for start, end in spans:
                opening = dt.datetime.combine(day, start, at.tzinfo)
                if dt.datetime.combine(day, end, at.tzinfo) > at:
                    return max(opening, at)
        return at


@dataclass(frozen=True)
class QueueConfig:
    queues: dict[str, Queue]
    general_id: str

    @classmethod
    def load(cls, path: Path = QUEUES_FILE) -> QueueConfig:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        queues = {
            q["id"]: Queue(
                id=q["id"],
                name=q["name"],
                departments=tuple(q.get("departments") or ()),
                hours=_spans(q.get("hours")),
                weekend_hours=_spans(q.get("weekend_hours")),
                overflow_minutes=q.get("overflow_minutes"),
            )
            for q in raw["queues"]
        }
        general = raw.get("general", "general")
        if general not in queues:
            raise ValueError(f"{path}: general queue {general!r} is not defined")
        return cls(queues, general)

    @property
    def general(self) -> Queue:
        return self.queues[self.general_id]

    def route(self, department: str | None) -> Queue:
        """The department's own queue when one serves it, else the general queue."""
        if department:
            for queue in self.queues.values():
                if queue.id != self.general_id and queue.serves(department):
                    return queue
        return self.general

    def get(self, queue_id: str) -> Queue | None:
        return self.queues.get(queue_id)
