"""Answering from the knowledge base alone (the path used when Rasa is not involved or is down).

answer  → the item's card, then what people usually need next;
suggest → "did you mean" with the best 2–3 items as buttons;
none    → what the assistant can help with, with hot questions, never a made-up answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.messages import Button, ButtonsMessage, KBCard, RichMessage, TextMessage, parse_payload, payload
from knowledge_base.related import next_items
from knowledge_base.retrieval import Band, Candidate, Retriever, SearchResult
from knowledge_base.schema import Entry

HOT_ITEMS = (
    "passport.renew",
    "idcard.lost",
    "onething.birth",
    "hpf.withdraw_rent",
    "sscard.replace",
    "onething.open_restaurant",
)

_GREETING = re.compile(r"^(你好|您好|hi|hello|嗨|哈喽|在吗|在不在|有人吗)[呀啊吗呢！!。.~～\s]*$", re.I)
_THANKS = re.compile(r"^(谢谢|多谢|感谢|谢了|thanks?)(你|您|啦|了)?[呀啊！!。.~～\s]*$", re.I)
_BYE = re.compile(r"^(再见|拜拜|bye|好的再见)[呀啊！!。.~～\s]*$", re.I)

SCOPE = "我是智询政务服务助手，可以解答证件办理、户籍、社保医保、公积金、不动产、婚育、教育、企业开办和纳税等政务服务事项的办理条件、所需材料、流程、地点和时限。"


@dataclass(frozen=True)
class Scored:
    kb_id: str
    score: float


@dataclass(frozen=True)
class Answer:
    replies: list[RichMessage]
    band: Band
    candidates: list[Scored]
    kb_id: str | None
    handoff: str | None = None  # why a person was asked for, when one was


def scored(candidates: list[Candidate]) -> list[Scored]:
    return [Scored(c.kb_id, round(c.confidence, 4)) for c in candidates]


def item_button(kb_id: str, title: str) -> Button:
    return Button(title=title, payload=payload("ask_service", kb_id=kb_id))


class KBAnswerer:
    def __init__(self, retriever: Retriever):
        self.retriever = retriever

    def respond(self, text: str, button: str | None = None) -> Answer:
        """Answer from the KB alone. A pressed item button is honoured; other buttons count as their text."""
        pressed = parse_payload(button or text)
        kb_id = pressed[1].get("kb_id") if pressed else None
        if kb_id and self.retriever.entry(kb_id):
            return Answer(self.card(kb_id), "answer", [], kb_id)
        small_talk = self._small_talk(text.strip())
        if small_talk:
            return Answer([TextMessage(text=small_talk), self.hot_questions("您可以这样问我：")], "none", [], None)
        result = self.retriever.search(text)
        best = result.best
        if result.band == "answer" and best:
            return Answer(self.card(best.kb_id), "answer", scored(result.candidates), best.kb_id)
        if result.band == "suggest" and best:
            return Answer([self.suggestions(result)], "suggest", scored(result.candidates), best.kb_id)
        return Answer(self.not_covered(), "none", scored(result.candidates), best.kb_id if best else None)

    def card(self, kb_id: str) -> list[RichMessage]:
        """The item's card, then what people usually need next."""
        index = self.retriever.index
        entry = index.by_id[kb_id]
        titles = {e.id: e.title for e in index.entries}
        following = self.next_items(entry)
        return [KBCard.from_entry(entry, titles), *([following] if following else [])]

    def next_items(self, entry: Entry) -> ButtonsMessage | None:
        """What people usually need after this item, as buttons (None if nothing)."""
        index = self.retriever.index
        following = next_items(entry, index.entries)
        if not following:
            return None
        buttons = [item_button(i, index.by_id[i].title) for i in following]
        return ButtonsMessage(text="办完这件事，大家通常还会办：", buttons=buttons)

    def suggestions(self, result: SearchResult) -> ButtonsMessage:
        best = result.candidates[0]
        options = [c for c in result.candidates if c.confidence >= best.confidence / 4][:3]
        buttons = [item_button(c.kb_id, c.title) for c in options]
        return ButtonsMessage(text="您是不是想问以下事项？请点选，也可以换个说法再问我。", buttons=buttons)

    def not_covered(self) -> list[RichMessage]:
        reply = TextMessage(
            text=f"抱歉，这个问题不在我能解答的范围内。{SCOPE}如需其他帮助，可拨打12345政务服务便民热线。"
        )
        return [reply, self.hot_questions("大家常问：")]

    def hot_questions(self, text: str) -> ButtonsMessage:
        index = self.retriever.index
        buttons = [item_button(i, index.by_id[i].title) for i in HOT_ITEMS if i in index.by_id]
        return ButtonsMessage(text=text, buttons=buttons)

    @staticmethod
    def _small_talk(text: str) -> str | None:
        if _GREETING.match(text):
            return f"您好！{SCOPE}请直接告诉我您想办什么事。"
        if _THANKS.match(text):
            return "不客气，很高兴能帮到您！还有其他问题可以随时问我。"
        if _BYE.match(text):
            return "再见，祝您办事顺利！"
        return None
