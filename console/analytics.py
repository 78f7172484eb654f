"""What a supervisor sees: live queues and agents, daily figures, what the bot failed on, hot keywords.

Days are local days in the escalation time zone (`settings.escalation.timezone`): a conversation
counts on the day it started, an escalation's wait on the day it was created, a rating on the day
it was given. Everything is read from the same tables the bot and the agents write, so the figures
cannot drift from what happened.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import jieba
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bot.escalation import EscalationRow, EscalationService, RatingRow
from bot.transcripts import ConversationRow, MessageRow
from console.accounts import Account
from knowledge_base.text import STOPWORDS, normalise

MAX_RANGE_DAYS = 366
FAILED_BANDS = ("none", "suggest")
_KEYWORD = re.compile(r"[\u4e00-\u9fff]{2,}|[a-z]{2,}")
# Words that say nothing about the topic in citizens' questions, on top of retrieval's stop words.
KEYWORD_STOPWORDS = STOPWORDS | frozenset(
    [
        "转人工",
        "人工",
        "客服",
        "多久",
        "多少",
        "为什么",
        "知道",
        "不是",
        "不能",
        "这个",
        "那个",
        "还是",
        "就是",
        "的话",
        "一样",
        "不会",
        "怎么弄",
        "怎么样",
        "哪个",
        "好的",
        "不用",
        "不要",
        "没有",
        "可能",
        "自己",
        "我家",
        "我想",
        "请问一下",
        "麻烦",
        "您好",
        "谢谢您",
    ]
)


def _utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class DateRange:
    """Local days `since` … `until`, both included."""

    since: dt.date
    until: dt.date
    zone: ZoneInfo

    def __post_init__(self) -> None:
        if self.until < self.since:
            raise ValueError("the end date is before the start date")
        if (self.until - self.since).days >= MAX_RANGE_DAYS:
            raise ValueError(f"a range can span at most {MAX_RANGE_DAYS} days")

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.combine(self.since, dt.time(), self.zone).astimezone(dt.UTC)

    @property
    def end(self) -> dt.datetime:
        return dt.datetime.combine(self.until + dt.timedelta(days=1), dt.time(), self.zone).astimezone(dt.UTC)

    def days(self) -> Iterator[dt.date]:
        day = self.since
        while day <= self.until:
            yield day
            day += dt.timedelta(days=1)

    def day_of(self, moment: dt.datetime) -> dt.date:
        return _utc(moment).astimezone(self.zone).date()


@dataclass
class DayFigures:
    day: str
    conversations: int = 0
    bot_resolved: int = 0
    escalated: int = 0
    waits: list[float] = field(default_factory=list)
    ratings: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        n = self.conversations
        good = sum(1 for r in self.ratings if r >= 4)
        return {
            "day": self.day,
            "conversations": n,
            "bot_resolved": self.bot_resolved,
            "bot_resolved_share": round(self.bot_resolved / n, 4) if n else None,
            "escalated": self.escalated,
            "escalation_rate": round(self.escalated / n, 4) if n else None,
            "accepted": len(self.waits),
            "average_wait_seconds": round(sum(self.waits) / len(self.waits), 1) if self.waits else None,
            "ratings": len(self.ratings),
            "average_rating": round(sum(self.ratings) / len(self.ratings), 2) if self.ratings else None,
            "satisfied_share": round(good / len(self.ratings), 4) if self.ratings else None,
        }


@dataclass(frozen=True)
class FailedQuestion:
    """A citizen line the bot did not answer confidently, or that ended in a repeated-miss escalation."""

    conversation_id: str
    seq: int
    created_at: dt.datetime
    text: str
    band: str | None  # the bot's band for it ("none"/"suggest"), None when only the escalation says so
    guess: str | None  # the KB item the bot matched or ranked first
    repeated_miss: bool = False

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "created_at": self.created_at.isoformat()}


class Analytics:
    def __init__(self, engine: Engine, escalations: EscalationService, timezone: str):
        self.engine, self.escalations = engine, escalations
        self.zone = ZoneInfo(timezone)

    def range(self, since: dt.date | None, until: dt.date | None, default_days: int = 7) -> DateRange:
        today = self.today()
        until = until or today
        return DateRange(since or until - dt.timedelta(days=default_days - 1), until, self.zone)

    def today(self) -> dt.date:
        return dt.datetime.now(self.zone).date()

    # Live ----------------------------------------------------------------------------------------------

    def live(self, accounts: Iterable[Account]) -> dict[str, Any]:
        """Every queue with how many wait and the longest wait; every agent with status and load."""
        now = dt.datetime.now(dt.UTC)
        waiting = self.escalations.waiting()
        active = self.escalations.active()
        queues = []
        for queue in self.escalations.queues.queues.values():
            mine = [e for e in waiting if e.queue_id == queue.id]
            longest = max((now - e.queued_at for e in mine), default=dt.timedelta())
            queues.append(
                {
                    "id": queue.id,
                    "name": queue.name,
                    "open": queue.is_open(now.astimezone(self.zone)),
                    "waiting": len(mine),
                    "longest_wait_seconds": max(0, int(longest.total_seconds())),
                    "after_hours": sum(1 for e in mine if e.after_hours),
                    "active": sum(1 for e in active if e.queue_id == queue.id),
                }
            )
        load = Counter(e.agent for e in active if e.agent)
        agents = [
            {
                "username": a.username,
                "display_name": a.display_name,
                "role": a.role,
                "departments": list(a.departments),
                "status": a.status,
                "active_chats": load.get(a.username, 0),
                "capacity": a.capacity,
                "load": round(load.get(a.username, 0) / a.capacity, 2) if a.capacity else None,
            }
            for a in accounts
            if a.active and a.can("chat")
        ]
        order = {"online": 0, "busy": 1, "away": 2, "offline": 3}
        agents.sort(key=lambda a: (order.get(str(a["status"]), 9), str(a["username"])))
        return {
            "at": now.isoformat(),
            "queues": queues,
            "agents": agents,
            "totals": {
                "waiting": len(waiting),
                "active": len(active),
                "agents_online": sum(1 for a in agents if a["status"] != "offline"),
            },
        }

    # Figures -------------------------------------------------------------------------------------------

    def figures(self, days: DateRange) -> dict[str, Any]:
        """Per-day figures over `days`, and the same over the whole range."""
        per_day = {day: DayFigures(day.isoformat()) for day in days.days()}
        total = DayFigures(f"{days.since.isoformat()}/{days.until.isoformat()}")
        with Session(self.engine) as session:
            started = list(
                session.execute(
                    select(ConversationRow.id, ConversationRow.created_at).where(
                        ConversationRow.created_at >= days.start, ConversationRow.created_at < days.end
                    )
                )
            )
            in_range = select(ConversationRow.id).where(
                ConversationRow.created_at >= days.start, ConversationRow.created_at < days.end
            )
            escalated = set(
                session.scalars(
                    select(EscalationRow.conversation_id).where(EscalationRow.conversation_id.in_(in_range))
                )
            )
            answered = set(
                session.scalars(
                    select(MessageRow.conversation_id)
                    .where(MessageRow.conversation_id.in_(in_range))
                    .where(MessageRow.role == "bot", MessageRow.band == "answer")
                    .distinct()
                )
            )
            waits = list(
                session.execute(
                    select(EscalationRow.created_at, EscalationRow.accepted_at).where(
                        EscalationRow.created_at >= days.start,
                        EscalationRow.created_at < days.end,
                        EscalationRow.accepted_at.is_not(None),
                    )
                )
            )
            ratings = list(
                session.execute(
                    select(RatingRow.created_at, RatingRow.score).where(
                        RatingRow.created_at >= days.start, RatingRow.created_at < days.end
                    )
                )
            )
        for conversation_id, created_at in started:
            for figures in (per_day[days.day_of(created_at)], total):
                figures.conversations += 1
                if conversation_id in escalated:
                    figures.escalated += 1
                elif conversation_id in answered:
                    figures.bot_resolved += 1
        for created_at, accepted_at in waits:
            if accepted_at is None:  # excluded by the query; for the type checker
                continue
            seconds = max(0.0, (_utc(accepted_at) - _utc(created_at)).total_seconds())
            per_day[days.day_of(created_at)].waits.append(seconds)
            total.waits.append(seconds)
        for created_at, score in ratings:
            per_day[days.day_of(created_at)].ratings.append(score)
            total.ratings.append(score)
        return {
            "since": days.since.isoformat(),
            "until": days.until.isoformat(),
            "timezone": str(self.zone),
            "total": total.to_json(),
            "days": [f.to_json() for f in per_day.values()],
        }

    # Failures and keywords -----------------------------------------------------------------------------

    def failed_questions(self, days: DateRange, limit: int = 5000) -> list[FailedQuestion]:
        """Citizen lines in `days` answered with band none/suggest, or followed by a repeated-miss
        escalation (the line that led to it), newest last; at most `limit` of the newest."""
        query = (
            select(MessageRow)
            .where(MessageRow.created_at >= days.start, MessageRow.created_at < days.end)
            .where(MessageRow.role.in_(("citizen", "bot", "system")))
            .order_by(MessageRow.conversation_id, MessageRow.seq)
        )
        found: dict[tuple[str, int], FailedQuestion] = {}
        with Session(self.engine) as session:
            pending: MessageRow | None = None  # the last citizen line, until the bot answers it
            last_citizen: MessageRow | None = None
            conversation = ""
            for row in session.scalars(query.execution_options(yield_per=1000)):
                if row.conversation_id != conversation:
                    conversation, pending, last_citizen = row.conversation_id, None, None
                if row.role == "citizen":
                    pressed = isinstance(row.payload, dict) and bool(row.payload.get("button"))
                    pending = last_citizen = None if pressed else row  # a button repeats the bot's words
                elif row.role == "bot" and pending is not None:
                    if row.band in FAILED_BANDS:
                        found[(row.conversation_id, pending.seq)] = _failed(pending, row.band, _guess(row))
                    pending = None
                elif row.role == "system" and last_citizen is not None and _repeated_miss(row.payload):
                    key = (row.conversation_id, last_citizen.seq)
                    earlier = found.get(key)
                    guess = earlier.guess if earlier else row.kb_id
                    found[key] = _failed(last_citizen, earlier.band if earlier else None, guess, repeated_miss=True)
        failed = sorted(found.values(), key=lambda f: f.created_at)
        return failed[-limit:]

    def keywords(self, days: DateRange, limit: int = 50) -> dict[str, Any]:
        """The most frequent topic words in citizens' lines (jieba, stop words removed)."""
        counts: Counter[str] = Counter()
        spread: defaultdict[str, set[str]] = defaultdict(set)
        lines = 0
        query = (
            select(MessageRow.conversation_id, MessageRow.text, MessageRow.payload)
            .where(MessageRow.created_at >= days.start, MessageRow.created_at < days.end)
            .where(MessageRow.role == "citizen")
        )
        with Session(self.engine) as session:
            for conversation_id, text, payload in session.execute(query.execution_options(yield_per=1000)):
                if isinstance(payload, dict) and payload.get("button"):
                    continue  # a pressed button repeats a title the bot offered, not the citizen's words
                lines += 1
                for word in keyword_tokens(text):
                    counts[word] += 1
                    spread[word].add(conversation_id)
        return {
            "since": days.since.isoformat(),
            "until": days.until.isoformat(),
            "lines": lines,
            "keywords": [
                {"word": word, "count": count, "conversations": len(spread[word])}
                for word, count in counts.most_common(limit)
            ],
        }


def keyword_tokens(text: str) -> list[str]:
    """Topic words of one line: jieba (precise mode), two or more letters, no stop words, no numbers."""
    return [w for w in jieba.lcut(normalise(text)) if _KEYWORD.fullmatch(w) and w not in KEYWORD_STOPWORDS]


def _failed(row: MessageRow, band: str | None, guess: str | None, *, repeated_miss: bool = False) -> FailedQuestion:
    return FailedQuestion(row.conversation_id, row.seq, _utc(row.created_at), row.text, band, guess, repeated_miss)


def _guess(bot_line: MessageRow) -> str | None:
    if bot_line.kb_id:
        return bot_line.kb_id
    scores = bot_line.scores if isinstance(bot_line.scores, list) else []
    first = scores[0] if scores and isinstance(scores[0], dict) else {}
    kb_id = first.get("kb_id")
    return kb_id if isinstance(kb_id, str) else None


def _repeated_miss(payload: Any) -> bool:
    return (
        isinstance(payload, dict) and payload.get("event") == "escalation" and payload.get("reason") == "repeated_miss"
    )
