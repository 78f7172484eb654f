"""One turn of a conversation: log the citizen's line, answer, log the answer, return it.

Rasa runs the dialogue when it is reachable; when it is not (starting,
restarting, down) the turn is answered from the knowledge base directly, so
the citizen still gets an answer and never an error about our plumbing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.answers import Answer, KBAnswerer, Scored
from bot.messages import parse_payload
from bot.rasa_client import DialogueUnavailable, RasaClient
from bot.transcripts import TranscriptStore

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


@dataclass(frozen=True)
class Turn:
    conversation_id: str
    answer: Answer


class ChatService:
    def __init__(self, transcripts: TranscriptStore, answerer: KBAnswerer, dialogue: RasaClient | None = None):
        self.transcripts, self.answerer, self.dialogue = transcripts, answerer, dialogue

    def handle(self, message: UserMessage) -> Turn:
        conversation_id = message.conversation_id
        if conversation_id is None:
            conversation_id = self.transcripts.open_conversation(message.channel, message.sender)
        elif not self.transcripts.exists(conversation_id):
            raise UnknownConversation(conversation_id)
        # The citizen's words are durable before any work is done on them.
        self.transcripts.append(
            conversation_id,
            message.channel,
            "citizen",
            message.text,
            payload={"button": message.payload} if message.payload else None,
        )
        answer = self._answer(conversation_id, message)
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
        return Turn(conversation_id, answer)

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
