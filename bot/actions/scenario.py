"""Guided 情形 scenarios as a Rasa form driven by the KB.

`scenario_form` has one slot, `scenario_answer`, which this module's
validation keeps re-opening until the entry's scenario has an answer for every
question that applies; the answers live in `scenario_answers`. A curator adds
or changes a scenario in the KB entry, never here.
"""

from __future__ import annotations

import re

from bot.action_server import Dispatcher, Event, Tracker, action, end_loop, slot
from bot.actions.service import answered, next_steps, show_item
from bot.checklists import build
from bot.dialogue import Dialogue
from bot.messages import Button, ButtonsMessage, ChecklistCard, payload
from knowledge_base.schema import Entry, Option, Scenario, ScenarioQuestion
from knowledge_base.text import normalise

_STOP = re.compile(r"退出|不办了|不问了|算了|结束|不用了|停止")
_SPLIT = re.compile(r"[/／、（）()，,\s]+")
_NEGATION = "不没非无未"


def _state(t: Tracker, ctx: Dialogue) -> tuple[Entry | None, Scenario | None, dict[str, str]]:
    entry = ctx.entry(t.slots.get("scenario_item"))
    answers = t.slots.get("scenario_answers") or {}
    return entry, entry.scenario if entry else None, dict(answers)


def _terms(option: Option) -> list[str]:
    return [option.label, *_SPLIT.split(option.label), *option.synonyms]


def _present(term: str, text: str) -> bool:
    """`term` occurs in `text` and is not negated right before it (「不是本地户口」 does not pick 本地)."""
    start = text.find(term)
    while start >= 0:
        if start == 0 or text[start - 1] not in _NEGATION or term[0] in _NEGATION:
            return True
        start = text.find(term, start + 1)
    return False


def match_option(question: ScenarioQuestion, value: str, intent: str) -> Option | None:
    by_id = {o.id: o for o in question.options}
    if value in by_id:
        return by_id[value]
    text = normalise(value).lower()
    scores: dict[str, int] = {}
    for option in question.options:
        found = [len(term) for term in _terms(option) if len(term) >= 1 and _present(normalise(term).lower(), text)]
        if found:
            scores[option.id] = max(found)
    if not scores:  # no whole term: fall back to shared character pairs (「有招牌」 ~ 「设置门头招牌」)
        grams = _bigrams(text)
        for option in question.options:
            shared = len(grams & set().union(*(_bigrams(normalise(t).lower()) for t in _terms(option))))
            if shared:
                scores[option.id] = shared
    if scores:
        best = max(scores.values())
        winners = [by_id[o] for o, s in scores.items() if s == best]
        if len(winners) > 1:
            winners = _by_polarity(winners, text)
        return winners[0] if len(winners) == 1 else None
    if intent == "affirm" and "yes" in by_id:
        return by_id["yes"]
    if intent == "deny" and "no" in by_id:
        return by_id["no"]
    return None


def _bigrams(text: str) -> set[str]:
    return {text[i : i + 2] for i in range(len(text) - 1)}


def _negated(text: str) -> bool:
    return any(ch in text for ch in _NEGATION)


def _by_polarity(options: list[Option], text: str) -> list[Option]:
    """Between 「设置招牌」 and 「不设招牌」, a reply without a negation means the positive one."""
    wanted = _negated(text)
    return [o for o in options if _negated(o.label) == wanted]


@action("action_ask_scenario_answer")
def action_ask_scenario_answer(t: Tracker, d: Dispatcher, ctx: Dialogue) -> list[Event]:
    entry, scenario, answers = _state(t, ctx)
    question = scenario.next_question(answers) if scenario else None
    if entry is None or question is None:
        return []
    buttons = [Button(title=o.label, payload=payload("inform", option=o.id)) for o in question.options]
    d.say(ButtonsMessage(text=f"（第{len(answers) + 1}问）{question.ask}", buttons=buttons))
    answered(d, entry.id)
    return []


@action("validate_scenario_form")
def validate_scenario_form(t: Tracker, d: Dispatcher, ctx: Dialogue) -> list[Event]:
    entry, scenario, answers = _state(t, ctx)
    value = str(t.slots.get("scenario_answer") or "")
    question = scenario.next_question(answers) if scenario else None
    if entry is None or question is None:
        return [slot("scenario_answer", "done")]
    answered(d, entry.id)
    if not value:
        return []  # the form is just starting: nothing said yet
    option = match_option(question, value, t.intent)
    if option is not None:
        answers[question.id] = option.id
        done = scenario.next_question(answers) is None if scenario else True
        return [slot("scenario_answers", answers), slot("scenario_answer", "done" if done else None)]
    other = ctx.entry(t.entity("kb_id"))
    if other is not None and other.id == entry.id:
        other = None
    if other is None and t.intent == "ask_service" and len(normalise(value)) >= 6:
        result = ctx.retriever.search(t.text)
        if result.band == "answer" and result.best and result.best.kb_id != entry.id:
            other = ctx.entry(result.best.kb_id)
    if other is not None:
        d.text("好的，先看您问的这个事项。刚才的情形引导已结束，需要时可以再点“按我的情况生成材料清单”。")
        return [*show_item(d, ctx, other), slot("scenario_answer", None), slot("requested_slot", None), end_loop()]
    if t.intent == "deny" or _STOP.search(value):
        d.text("好的，已退出情形引导。您可以继续问我其他问题。")
        return [slot("scenario_answer", None), slot("requested_slot", None), end_loop()]
    d.text("抱歉，我没有听明白您的情况。请点选下面的选项，或者说“退出”结束引导。")
    return [slot("scenario_answer", None)]


@action("action_scenario_checklist")
def action_scenario_checklist(t: Tracker, d: Dispatcher, ctx: Dialogue) -> list[Event]:
    entry, scenario, answers = _state(t, ctx)
    if entry is None or scenario is None or scenario.next_question(answers) is not None:
        return []  # left early: the validation already said so
    checklist = build(entry, answers, ctx.titles(), ctx.kb_store.version(entry.id))
    ctx.checklists.save(checklist, t.sender_id)
    d.say(
        ChecklistCard(
            checklist=checklist, print_url=f"/checklist/{checklist.id}", pdf_url=f"/checklist/{checklist.id}.pdf"
        )
    )
    steps = [b for b in next_steps(entry) if b.title != "按我的情况生成材料清单"]
    d.buttons("清单已生成。接下来您可以：", [*steps, Button(title="转人工咨询", payload=payload("request_human"))])
    following = ctx.answerer.next_items(entry)
    if following:
        d.say(following)
    answered(d, entry.id)
    return [slot("checklist", checklist.id), slot("offer", f"booking:{entry.id}"), slot("item", entry.id)]
