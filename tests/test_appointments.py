"""Window appointments: working days, capacity, no double booking under concurrency."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from bot.actions.booking import parse_day, pick_slot
from bot.appointments import Appointments, is_workday
from bot.transcripts import TranscriptStore
from zhixun.database import make_engine


def _appointments(database_url: str, tmp_path: Path, windows: int = 1) -> Appointments:
    halls = {
        "slot_minutes": 30,
        "days_ahead": 7,
        "halls": [
            {
                "id": "hall",
                "name": "测试大厅",
                "address": "某某路1号",
                "hours": [["09:00", "12:00"]],
                "windows": {"*": windows},
            }
        ],
    }
    path = tmp_path / "halls.yml"
    path.write_text(yaml.safe_dump(halls, allow_unicode=True), encoding="utf-8")
    engine = make_engine(database_url)
    TranscriptStore(engine).create_tables()
    return Appointments(engine, path)


def _next_workday() -> dt.date:
    day = dt.date.today() + dt.timedelta(days=1)
    while not is_workday(day):
        day += dt.timedelta(days=1)
    return day


def test_official_holidays_and_make_up_days():
    assert not is_workday(dt.date(2026, 10, 1))  # National Day
    assert not is_workday(dt.date(2026, 2, 17))  # Spring Festival
    assert is_workday(dt.date(2026, 2, 14))  # a Saturday worked in exchange (调休)


def test_twenty_parallel_requests_for_the_last_place_book_exactly_once(database_url: str, tmp_path: Path):
    appointments = _appointments(database_url, tmp_path, windows=1)
    day = _next_workday()

    def attempt(n: int):
        return appointments.book(f"conv{n:02d}", "passport.renew", "公安局出入境管理局", "hall", day, "09:00")

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(attempt, range(20)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    hall = appointments.halls["hall"]
    assert "09:00" not in [s.start for s in appointments.slots(hall, "公安局出入境管理局", day)]


def test_cancelling_frees_the_place(database_url: str, tmp_path: Path):
    appointments = _appointments(database_url, tmp_path, windows=1)
    day = _next_workday()
    booking = appointments.book("conv", "passport.renew", "公安局", "hall", day, "09:30")
    assert booking is not None and len(booking.code) == 6
    assert appointments.book("other", "passport.renew", "公安局", "hall", day, "09:30") is None
    assert appointments.cancel("someone-else", booking.id) is None, "only the booking's own conversation cancels it"
    assert appointments.cancel("conv", booking.id) is not None
    assert appointments.active("conv") == []
    assert appointments.book("other", "passport.renew", "公安局", "hall", day, "09:30") is not None


def test_no_booking_outside_the_hall_hours_or_on_holidays(tmp_path: Path):
    appointments = _appointments(f"sqlite:///{tmp_path / 'a.db'}", tmp_path)
    day = _next_workday()
    assert appointments.book("c", "x", "公安局", "hall", day, "13:00") is None
    assert appointments.book("c", "x", "公安局", "hall", dt.date(2026, 10, 1), "09:00") is None


def test_dates_and_times_in_free_text():
    today = dt.date(2026, 11, 25)  # a Wednesday
    assert parse_day("明天", today) == dt.date(2026, 11, 26)
    assert parse_day("后天上午", today) == dt.date(2026, 11, 27)
    assert parse_day("周五", today) == dt.date(2026, 11, 27)
    assert parse_day("下周一", today) == dt.date(2026, 11, 30)
    assert parse_day("12月1日", today) == dt.date(2026, 12, 1)
    assert parse_day("随便", today) is None
    starts = ["09:00", "09:30", "10:00", "14:00", "14:30"]
    assert pick_slot("上午", starts) == "09:00"
    assert pick_slot("下午", starts) == "14:00"
    assert pick_slot("10点", starts) == "10:00"
    assert pick_slot("两点半", starts) == "14:30"
