"""Window appointments in chat: `booking_form` asks hall → date → time slot, then books atomically."""

from __future__ import annotations

import datetime as dt
import re

from bot.action_server import Dispatcher, Event, Tracker, action, followup, slot
from bot.actions.service import answer_question
from bot.appointments import Booking, Hall, day_label
from bot.dialogue import Dialogue
from bot.messages import Button, ButtonsMessage, parse_payload, payload
from knowledge_base.schema import Entry
from knowledge_base.text import normalise

BOOKING_SLOTS = ("booking_hall", "booking_date", "booking_slot")
_RELATIVE_DAYS = {"今天": 0, "明天": 1, "后天": 2, "大后天": 3}
_WEEKDAY = re.compile(r"(下)?(?:周|星期|礼拜)([一二三四五六日天1-7])")
_MONTH_DAY = re.compile(r"(?:(\d{1,2})月)?(\d{1,2})(?:日|号)")
_CLOCK = re.compile(r"(\d{1,2})(?:[:：点](\d{1,2}|半)?)")
_NUMERALS = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "日": 7, "天": 7}


def parse_day(text: str, today: dt.date) -> dt.date | None:
    """「明天」「周五」「下周一」「11月27日」「27号」 or an ISO date from a button."""
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        pass
    norm = normalise(text)
    for word, offset in sorted(_RELATIVE_DAYS.items(), key=lambda kv: -len(kv[0])):
        if word in norm:
            return today + dt.timedelta(days=offset)
    weekday = _WEEKDAY.search(norm)
    if weekday:
        target = (_NUMERALS.get(weekday.group(2)) or int(weekday.group(2))) - 1
        if weekday.group(1):  # 「下周一」: that day of next calendar week
            return today + dt.timedelta(days=7 - today.weekday() + target)
        return today + dt.timedelta(days=(target - today.weekday()) % 7)
    month_day = _MONTH_DAY.search(norm)
    if month_day:
        month = int(month_day.group(1) or today.month)
        day = int(month_day.group(2))
        for year in (today.year, today.year + 1):
            try:
                found = dt.date(year, month, day)
            except ValueError:
                return None
            if found >= today:
                return found
    return None


def pick_slot(text: str, starts: list[str]) -> str | None:
    """「09:30」 from a button, or 「上午」「下午」「10点」「两点半」 in free text: the first free slot that fits."""
    if text in starts:
        return text
    norm = normalise(text).replace("两", "2")
    clock = _CLOCK.search(norm)
    if clock:
        hour = int(clock.group(1))
        if ("下午" in norm or "晚" in norm) and hour < 12:
            hour += 12
        elif hour < 8:
            hour += 12  # 「两点」 at a service hall means 14:00
        minute = 30 if clock.group(2) == "半" else int(clock.group(2) or 0)
        wanted = f"{hour:02d}:{minute:02d}"
        return next((s for s in starts if s >= wanted), None)
    if "上午" in norm or "早" in norm:
        return next((s for s in starts if s < "12:00"), None)
    if "下午" in norm:
        return next((s for s in starts if s >= "12:00"), None)
    return None


def _entry(t: Tracker, ctx: Dialogue) -> Entry | None:
    return ctx.entry(t.slots.get("item"))


def _hall(t: Tracker, ctx: Dialogue) -> Hall | None:
    return ctx.appointments.halls.get(str(t.slots.get("booking_hall") or ""))


def _item_from_text(t: Tracker, ctx: Dialogue) -> str | None:
    if t.from_button:
        return None
    result = ctx.retriever.search(t.text)
    return result.best.kb_id if result.band == "answer" and result.best else None


_BOOKING_WORDS = re.compile(r"预约|约|号|排队|改期|改时间")


@action("action_start_booking")
def action_start_booking(t: Tracker, d: Dispatcher, ctx: Dialogue) -> list[Event]:
    # The booking rule does not wait for the user, so every path that does not start the form listens.
    listen = followup("action_listen")
    if t.intent == "book_appointment" and not t.from_button and not _BOOKING_WORDS.search(t.text):
        events = answer_question(t, d, ctx)  # 「我想开个饭店」 taken for a booking is a service question
        return events if any(e["event"] == "followup" for e in events) else [*events, listen]
    entry = ctx.entry(t.entity("kb_id") or _item_from_text(t, ctx) or t.slots.get("item"))
    if entry is None:
        hot = ctx.answerer.hot_questions("请先告诉我您要预约办理哪个事项，例如：")
        for button in hot.buttons:  # pressing one of these books that item
            pressed = parse_payload(button.payload)
            button.payload = payload("book_appointment", **(pressed[1] if pressed else {}))
        d.say(hot)
        return [listen]
    same = [b for b in ctx.appointments.active(t.sender_id) if b.kb_id == entry.id]
    if same:
        d.buttons(
            f"您已经预约了「{entry.title}」：{same[0].summary()}。如需改时间，请先取消原预约。",
            [Button(title="取消这个预约", payload=payload("cancel_appointment", booking_id=same[0].id))],
        )
        return [slot("item", entry.id), listen]
    halls = ctx.appointments.halls_for(entry.department)
    if not halls:
        d.text(f"「{entry.title}」暂不支持预约，请直接到窗口办理：{entry.where}")
        return [slot("item", entry.id), listen]
    d.text(f"好的，为您预约「{entry.title}」的窗口办理。")
    return [
        slot("item", entry.id),
        slot("booking_hall", halls[0].id if len(halls) == 1 else None),
        slot("booking_date", None),
        slot("booking_slot", None),
        followup("booking_form"),
    ]


@action("action_ask_booking_hall")
def action_ask_booking_hall(t: Tracker, d: Dispatcher, ctx: Dialogue) -> list[Event]:
    entry = _entry(t, ctx)
    halls = ctx.appointments.halls_for(entry.department) if entry else []
    buttons = [Button(title=h.name, payload=payload("inform", hall=h.id)) for h in halls]
    d.say(ButtonsMessage(text="请选择办理地点：", buttons=buttons))
    return []


def _open_days(t: Tracker, ctx: Dialogue) -> list[dt.date]:
    entry, hall = _entry(t, ctx), _hall(t, ctx)
    if entry is None or hall is None:
        return []
    return [day for day in ctx.appointments.days() if ctx.appointments.slots(hall, entry.department, day)]


@action("action_ask_booking_date")
def action_ask_booking_date(t: Tracker, d: Dispatcher, ctx: Dialogue) -> list[Event]:
    days = _open_days(t, ctx)
    if not days:
        d.text("抱歉，近期这个地点的预约已满。您可以换个办理地点，或直接到窗口取号办理。")
        return [slot("booking_hall", None)]
    buttons = [Button(title=day_label(day), payload=payload("inform", date=day.isoformat())) for day in days]
    d.say(ButtonsMessage(text="请选择日期（法定节假日不办公，调休上班日可预约）：", buttons=buttons))
    return []


@action("action_ask_booking_slot")
def action_ask_booking_slot(t: Tracker, d: Dispatcher, ctx: Dialogue) -> list[Event]:
    entry, hall = _entry(t, ctx), _hall(t, ctx)
    day = dt.date.fromisoformat(str(t.slots.get("booking_date")))
    slots = ctx.appointments.slots(hall, entry.department, day) if entry and hall else []
    buttons = [Button(title=f"{s.label}（余{s.free}）", payload=payload("inform", time_slot=s.start)) for s in slots]
    d.say(ButtonsMessage(text=f"请选择{day_label(day)}的时段：", buttons=buttons))
    return []


@action("validate_booking_form")
def validate_booking_form(t: Tracker, d: Dispatcher, ctx: Dialogue) -> list[Event]:
    entry = _entry(t, ctx)
    if entry is None:
        return [slot(name, None) for name in BOOKING_SLOTS]
    events: list[Event] = []
    hall_value = t.slots.get("booking_hall")
    halls = ctx.appointments.halls_for(entry.department)
    if hall_value and hall_value not in {h.id for h in halls}:
        norm = normalise(str(hall_value))
        found = [
            h
            for h in halls
            if h.name in norm or any(part in norm for part in re.split(r"[（）()]", h.name) if len(part) >= 2)
        ]
        events.append(slot("booking_hall", found[0].id if len(found) == 1 else None))
        if len(found) != 1:
            d.text("没有找到这个办理地点，请点选下面的地点。")
    date_value = t.slots.get("booking_date")
    day = parse_day(str(date_value), ctx.appointments.now().date()) if date_value else None
    if date_value:
        if day is None or day not in _open_days(t, ctx):
            d.text("这一天不能预约（非工作日、已约满或超出可预约范围），请选择下面的日期。")
            day = None
        events.append(slot("booking_date", day.isoformat() if day else None))
    slot_value = t.slots.get("booking_slot")
    hall = _hall(t, ctx)
    if slot_value and hall and day:
        starts = [s.start for s in ctx.appointments.slots(hall, entry.department, day)]
        chosen = pick_slot(str(slot_value), starts)
        if chosen is None:
            d.text("这个时段已约满或不在办公时间，请选择下面的时段。")
        events.append(slot("booking_slot", chosen))
    return events


def reminder(booking: Booking, entry: Entry, materials: list[str]) -> str:
    """The text a citizen keeps (and later gets as a reminder): when, where, what to bring."""
    lines = "\n".join(f"{n}. {m}" for n, m in enumerate(materials, 1))
    return (
        f"预约成功！「{entry.title}」\n{booking.summary()}\n请提前10分钟到达，凭预约码和身份证取号。\n"
        f"请带齐以下材料：\n{lines}\n如需取消，回复“取消预约”。"
    )


@action("action_book_appointment")
def action_book_appointment(t: Tracker, d: Dispatcher, ctx: Dialogue) -> list[Event]:
    entry, hall = _entry(t, ctx), _hall(t, ctx)
    day_value, start = t.slots.get("booking_date"), t.slots.get("booking_slot")
    if entry is None or hall is None or not day_value or not start:
        return [slot(name, None) for name in BOOKING_SLOTS]
    booking = ctx.appointments.book(
        t.sender_id, entry.id, entry.department, hall.id, dt.date.fromisoformat(str(day_value)), str(start)
    )
    if booking is None:
        d.text("抱歉，这个时段刚刚被约满了，请换一个时段。")
        return [slot("booking_slot", None), followup("booking_form")]
    checklist = ctx.checklists.get(str(t.slots.get("checklist") or ""))
    if checklist and checklist.kb_id == entry.id:
        materials = [f"{m.name}（{m.form_label}{m.count}份）" for m in checklist.materials]
    else:
        materials = [m.name for m in entry.materials]
    d.buttons(
        reminder(booking, entry, materials),
        [Button(title="取消这个预约", payload=payload("cancel_appointment", booking_id=booking.id))],
    )
    d.meta["booking"] = booking.id
    return [*(slot(name, None) for name in BOOKING_SLOTS), slot("offer", None)]


def _cancel_buttons(bookings: list[Booking], ctx: Dialogue) -> list[Button]:
    titles = ctx.titles()
    return [
        Button(
            title=f"取消 {titles.get(b.kb_id, b.kb_id)} {day_label(b.day)} {b.start}",
            payload=payload("cancel_appointment", booking_id=b.id),
        )
        for b in bookings
    ]


@action("action_cancel_appointment")
def action_cancel_appointment(t: Tracker, d: Dispatcher, ctx: Dialogue) -> list[Event]:
    booking_id = t.entity("booking_id")
    if booking_id:
        cancelled = ctx.appointments.cancel(t.sender_id, booking_id)
        d.text(f"已为您取消预约：{cancelled.summary()}。" if cancelled else "没有找到这个预约，它可能已经取消了。")
        return []
    active = ctx.appointments.active(t.sender_id)
    if not active:
        d.text("您目前没有待办理的预约。")
        return []
    d.buttons("请确认要取消哪个预约：", _cancel_buttons(active, ctx))
    return []


@action("action_list_appointments")
def action_list_appointments(t: Tracker, d: Dispatcher, ctx: Dialogue) -> list[Event]:
    active = ctx.appointments.active(t.sender_id)
    if not active:
        d.text("您目前没有待办理的预约。需要的话，告诉我要办的事项，我帮您预约。")
        return []
    titles = ctx.titles()
    lines = "\n".join(f"· {titles.get(b.kb_id, b.kb_id)}：{b.summary()}" for b in active)
    d.buttons(f"您的预约：\n{lines}", _cancel_buttons(active, ctx))
    return []
