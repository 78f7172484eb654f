"""One turn of a conversation: log the citizen's line, answer, log the answer, return it.

Rasa runs the dialogue when it is reachable; when it is not (starting,
restarting, down) the turn is answered from the knowledge base directly, so
the citizen still gets an answer and never an error about our plumbing.
While a person is asked for or holds the conversation, the bot stays out of
it: the line goes to the agent, and a queued citizen only hears where they stand.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from bot.answers import Answer, KBAnswerer, Scored
from bot.escalation import Escalation, EscalationService
from bot.messages import TextMessage, parse_payload
from bot.notices import ASKS_FOR_PERSON, handoff_replies, phone_in, queue_notice
from bot.rasa_client import DialogueUnavailable, RasaClient
from bot.transcripts import TranscriptLine, TranscriptStore

log = logging.getLogger(__name__)


class UnknownConversation(LookupError):
    pass


@dataclass(frozen=True)
class UserMessage:
    channel: str
    text: str
    conversation_id: str | None = None
    sender: str = ""
    payload: str | None = None


HandledBy = Literal["bot", "queue", "agent"]  # the human queue while waiting for a person; an agent holding it


@dataclass(frozen=True)
class Turn:
    conversation_id: str
    answer: Answer
    handled_by: HandledBy = "bot"


class ChatService:
    def __init__(
        self,
        transcripts: TranscriptStore,
        answerer: KBAnswerer,
        escalations: EscalationService,
        dialogue: RasaClient | None = None,
    ):
        self.transcripts, self.answerer, self.escalations, self.dialogue = transcripts, answerer, escalations, dialogue

    def handle(self, message: UserMessage) -> Turn:
        conversation_id = message.conversation_id
        if conversation_id is None:
            conversation_id = self.transcripts.open_conversation(message.channel, message.sender)
        elif not self.transcripts.exists(conversation_id):
            raise UnknownConversation(conversation_id)
        # The citizen's words are durable before any work is done on them.
        line = self.transcripts.append(
            conversation_id,
            message.channel,
            "citizen",
            message.text,
            payload={"button": message.payload} if message.payload else None,
        )
        escalation = self.escalations.open_for(conversation_id)
        if escalation is not None:
            answer = self._while_escalated(escalation, message, line)
        else:
            answer = self._answer(conversation_id, message)
            escalation = self.escalations.open_for(conversation_id) if answer.handoff else None
        handled_by: HandledBy = "bot" if escalation is None else "agent" if escalation.status == "active" else "queue"
        if not answer.replies:
            return Turn(conversation_id, answer, handled_by)
        self.transcripts.append(
            conversation_id,
            message.channel,
            "bot",
            _plain_text(answer),
            payload=[r.model_dump(mode="json") for r in answer.replies],
            kb_id=answer.kb_id,
            band=answer.band,
            scores=[{"kb_id": c.kb_id, "score": c.score} for c in answer.candidates],
        )
        return Turn(conversation_id, answer, handled_by)

    def _while_escalated(self, escalation: Escalation, message: UserMessage, line: TranscriptLine) -> Answer:
        self.escalations.citizen_said(escalation, line)
        if escalation.status == "active":
            return Answer([], "none", [], escalation.kb_id)  # the agent answers
        if not escalation.after_hours:
            text = "收到，已转给工作人员。" + queue_notice(self.escalations, escalation)
        elif phone := phone_in(message.text):
            self.escalations.leave_callback(escalation, phone)
            text = "好的，已记下您的回电号码，工作人员上班后会给您回电。您还可以继续留言。"
        elif message.payload == "/callback":
            text = "请直接输入您的手机号码，工作人员上班后给您回电。"
        else:
            text = "已收到您的留言，工作人员上班后会第一时间查看并回复您。"
        return Answer([TextMessage(text=text)], "none", [], escalation.kb_id)

    def _answer(self, conversation_id: str, message: UserMessage) -> Answer:
        if self.dialogue is not None:
            button = message.payload if message.payload and parse_payload(message.payload) else None
            try:
                reply = self.dialogue.send(conversation_id, button or message.text, {"channel": message.channel})
            except DialogueUnavailable as exc:
                log.warning("dialogue unavailable, answering from the KB: %s", exc)
            else:
                if reply.messages:
                    meta = reply.meta
                    return Answer(
                        reply.messages,
                        meta.get("band", "none"),
                        [Scored(c["kb_id"], c["score"]) for c in meta.get("candidates", [])],
                        meta.get("kb_id"),
                        meta.get("handoff"),
                    )
        if ASKS_FOR_PERSON.search(message.text):
            escalation = self.escalations.request(conversation_id, "requested", None)
            return Answer(handoff_replies(self.escalations, escalation, "好的。"), "none", [], None, "requested")
        return self.answerer.respond(message.text, message.payload)


def _plain_text(answer: Answer) -> str:
    """A readable one-line rendering of the replies for transcript search and export."""
    parts = []
    for reply in answer.replies:
        if reply.type == "kb_card":
            parts.append(f"【{reply.title}】{reply.summary}")
        elif reply.type == "checklist":
            parts.append(f"【{reply.checklist.heading}】" + "；".join(m.name for m in reply.checklist.materials))
        elif reply.type == "buttons":
            parts.append(reply.text + " " + " / ".join(b.title for b in reply.buttons))
        else:
            parts.append(reply.text)
    return "\n".join(parts)
