"""Answering from the knowledge base alone (the path used when Rasa is not involved or is down).

answer  → the item's card, then what people usually need next;
suggest → "did you mean" with the best 2–3 items as buttons;
none    → what the assistant can help with, with hot questions, never a made-up answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.messages import Button, ButtonsMessage, KBCard, RichMessage, TextMessage
from knowledge_base.retrieval import Band, Candidate, Retriever, SearchResult

KB_PAYLOAD = re.compile(r"^kb:([a-z0-9_.]+)$")

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
class Answer:
    replies: list[RichMessage]
    band: Band
    candidates: list[Candidate]
    kb_id: str | None


class KBAnswerer:
    def __init__(self, retriever: Retriever):
        self.retriever = retriever

    def respond(self, text: str, payload: str | None = None) -> Answer:
        chosen = KB_PAYLOAD.match(payload or "")
        if chosen and self.retriever.entry(chosen.group(1)):
            return self._card(chosen.group(1), SearchResult("answer", []))
        small_talk = self._small_talk(text.strip())
        if small_talk:
            return Answer([TextMessage(text=small_talk), self._hot_questions("您可以这样问我：")], "none", [], None)
        result = self.retriever.search(text)
        best = result.best
        if result.band == "answer" and best:
            return self._card(best.kb_id, result)
        if result.band == "suggest" and best:
            options = [c for c in result.candidates if c.confidence >= best.confidence / 4][:3]
            buttons = [Button(title=c.title, payload=f"kb:{c.kb_id}") for c in options]
            message = "我不太确定您问的是哪个事项，您是想了解以下哪一项？也可以换个说法再问我。"
            return Answer([ButtonsMessage(text=message, buttons=buttons)], "suggest", result.candidates, best.kb_id)
        reply = TextMessage(
            text=f"抱歉，这个问题不在我能解答的范围内。{SCOPE}如需其他帮助，可拨打12345政务服务便民热线。"
        )
        return Answer(
            [reply, self._hot_questions("大家常问：")], "none", result.candidates, best.kb_id if best else None
        )

    def _card(self, kb_id: str, result: SearchResult) -> Answer:
        index = self.retriever.index
        entry = index.by_id[kb_id]
        titles = {e.id: e.title for e in index.entries}
        replies: list[RichMessage] = [KBCard.from_entry(entry, titles)]
        if entry.related:
            buttons = [Button(title=titles[r], payload=f"kb:{r}") for r in entry.related[:4] if r in titles]
            replies.append(ButtonsMessage(text="办完这件事，大家通常还会办：", buttons=buttons))
        return Answer(replies, "answer", result.candidates, kb_id)

    def _hot_questions(self, text: str) -> ButtonsMessage:
        index = self.retriever.index
        buttons = [Button(title=index.by_id[i].title, payload=f"kb:{i}") for i in HOT_ITEMS if i in index.by_id]
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
