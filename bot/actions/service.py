"""Answering: greeting, KB answers with the fallback ladder, follow-ups, handoff, small talk, yes/no."""

from __future__ import annotations

import re
from dataclasses import asdict

from bot import aspects
from bot.action_server import Dispatcher, Event, Tracker, action, followup, slot
from bot.answers import SCOPE, scored
from bot.dialogue import Dialogue
from bot.escalation import Reason
from bot.messages import Button, payload
from bot.notices import handoff_replies
from knowledge_base.retrieval import SearchResult
from knowledge_base.schema import Entry
from knowledge_base.text import normalise

MISSES_BEFORE_HANDOFF = 2
_FILLER = re.compile(r"[要吗呢啊吧么得的了是还请问这个那个办理怎样可以能需不\s\W]")


def describe(result: SearchResult) -> dict:
    best = result.best
    return {
        "kb_id": best.kb_id if best else None,
        "band": result.band,
        "candidates": [asdict(c) for c in scored(result.candidates)],
    }


def answered(d: Dispatcher, kb_id: str) -> None:
    d.meta.update({"kb_id": kb_id, "band": "answer"})
    d.meta.setdefault("candidates", [])


def next_steps(entry: Entry) -> list[Button]:
    buttons = []
    if entry.scenario:
        buttons.append(
            Button(title="按我的情况生成材料清单", payload=payload("ask_service", kb_id=entry.id, mode="guide"))
        )
    buttons.append(Button(title="预约窗口办理", payload=payload("book_appointment", kb_id=entry.id)))
    buttons.append(Button(title="网上申请", url=entry.online_link))
    return buttons


def show_item(d: Dispatcher, ctx: Dialogue, entry: Entry) -> list[Event]:
    card, *related = ctx.answerer.card(entry.id)
    d.say(card)
    d.buttons("您还可以：", next_steps(entry))
    for message in related:
        d.say(message)
    answered(d, entry.id)
    return [slot("item", entry.id), slot("misses", 0)]


def start_scenario(d: Dispatcher, entry: Entry) -> list[Event]:
    assert entry.scenario is not None
    d.text(f"好的，关于「{entry.title}」。{entry.scenario.intro}")
    answered(d, entry.id)
    return [
        slot("item", entry.id),
        slot("misses", 0),
        slot("scenario_item", entry.id),
        slot("scenario_answers", {}),
        slot("scenario_answer", None),
        followup("scenario_form"),
    ]


def answer_question(t: Tracker, d: Dispatcher, ctx: Dialogue) -> list[Event]:
    """A service question: a pressed item button, or retrieval with the fallback ladder."""
    entry = ctx.entry(t.entity("kb_id"))
    if entry is not None:
        if t.entity("mode") == "guide" and entry.scenario:
            return start_scenario(d, entry)
        return show_item(d, ctx, entry)
    result = ctx.retriever.search(t.text)
    d.meta.update(describe(result))
    best = result.best
    if result.band == "answer" and best:
        entry = ctx.entry(best.kb_id)
        assert entry is not None
        aspect = aspects.detect(t.text)
        if entry.scenario and (aspect is None or aspect.name == "materials"):
            return start_scenario(d, entry)
        if aspect is not None and aspect.name != "materials":
            d.text(aspect.answer(entry))
            d.buttons("您还可以：", [Button(title="查看完整办事指南", payload=payload("ask_service", kb_id=entry.id))])
            return [slot("item", entry.id), slot("misses", 0)]
        return show_item(d, ctx, entry)
    misses = int(t.slots.get("misses") or 0) + 1
    if misses >= MISSES_BEFORE_HANDOFF:
        return hand_off(t, d, ctx, "repeated_miss")
    if result.band == "suggest" and best:
        d.say(ctx.answerer.suggestions(result))
    else:
        for message in ctx.answerer.not_covered():
            d.say(message)
    return [slot("misses", misses)]


@action("action_answer_service")
def action_answer_service(t: Tracker, d: Dispatcher, ctx: Dialogue) -> list[Event]:
    return answer_question(t, d, ctx)


def _names_another_item(t: Tracker, ctx: Dialogue, aspect: aspects.Aspect | None) -> str | None:
    """「护照要多久」 classified as a follow-up still names its item; switch to it."""
    rest = normalise(t.text)
    for word in aspect.words if aspect else ():
        rest = rest.replace(word, "")
    if len(_FILLER.sub("", rest)) < 2:
        return None
    result = ctx.retriever.search(t.text)
    return result.best.kb_id if result.band == "answer" and result.best else None


@action("action_followup")
def action_followup(t: Tracker, d: Dispatcher, ctx: Dialogue) -> list[Event]:
    aspect = aspects.detect(t.text)
    kb_id = _names_another_item(t, ctx, aspect) or t.slots.get("item")
    entry = ctx.entry(kb_id)
    if entry is None:
        d.say(ctx.answerer.hot_questions("请先告诉我您想办理哪个事项，例如："))
        return []
    answered(d, entry.id)
    if aspect is None:
        return show_item(d, ctx, entry)
    d.text(aspect.answer(entry))
    return [slot("item", entry.id)]


def hand_off(t: Tracker, d: Dispatcher, ctx: Dialogue, reason: Reason) -> list[Event]:
    item = t.slots.get("item")
    # What the agent needs so that nothing is asked twice: the 情形 answers given so far.
    context = {"scenario_item": t.slots.get("scenario_item"), "scenario_answers": t.slots.get("scenario_answers") or {}}
    escalation = ctx.escalations.request(t.sender_id, reason, item, context)
    opening = {
        "complaint": "非常抱歉给您带来不好的体验。",
        "repeated_miss": "抱歉，这个问题我没能答好。",
        "requested": "好的。",
    }[reason]
    for message in handoff_replies(ctx.escalations, escalation, opening):
        d.say(message)
    d.meta["handoff"] = reason
    return [slot("misses", 0), slot("offer", None)]


@action("action_handoff")
def action_handoff(t: Tracker, d: Dispatcher, ctx: Dialogue) -> list[Event]:
    return hand_off(t, d, ctx, "complaint" if t.intent == "complain" else "requested")


@action("action_greet")
def action_greet(t: Tracker, d: Dispatcher, ctx: Dialogue) -> list[Event]:
    d.text(f"您好！{SCOPE}请直接告诉我您想办什么事，我会按您的情况列出需要准备的材料。")
    d.say(ctx.answerer.hot_questions("大家常问："))
    return []


_CHITCHAT = (
    (
        re.compile(r"机器人|真人|人工智能|ai|你是谁|叫什么"),
        "我是智询，政务服务智能助手，是一个机器人。需要工作人员时，说“转人工”就可以。",
    ),
    (re.compile(r"笑话|唱|聊天|无聊"), "这个我不太擅长😊。办事方面的问题，我随时为您解答。"),
    (re.compile(r"聪明|厉害|棒|可爱|喜欢你"), "谢谢夸奖！我会继续努力，帮您把事情一次办成。"),
)


@action("action_chitchat")
def action_chitchat(t: Tracker, d: Dispatcher, ctx: Dialogue) -> list[Event]:
    text = normalise(t.text).lower()
    reply = next((r for pattern, r in _CHITCHAT if pattern.search(text)), "")
    d.text(f"{reply}{SCOPE}")
    return []


@action("action_out_of_scope")
def action_out_of_scope(t: Tracker, d: Dispatcher, ctx: Dialogue) -> list[Event]:
    for message in ctx.answerer.not_covered():
        d.say(message)
    return []


@action("action_affirm_deny")
def action_affirm_deny(t: Tracker, d: Dispatcher, ctx: Dialogue) -> list[Event]:
    """「好的」/「不用了」 answer the bot's last offer (book a window for the item just listed)."""
    offer = str(t.slots.get("offer") or "")
    if t.intent == "affirm" and offer.startswith("booking:"):
        return [slot("offer", None), slot("item", offer.removeprefix("booking:")), followup("action_start_booking")]
    if t.intent == "affirm":
        d.text("好的。还有什么可以帮您？")
    else:
        d.text("好的。如还有其他问题，随时问我。")
    return [slot("offer", None)]
