"""One turn of a conversation: log the citizen's line, answer, log the answer, return it."""

from __future__ import annotations

from dataclasses import dataclass

from bot.answers import Answer, KBAnswerer
from bot.transcripts import TranscriptStore


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
    def __init__(self, transcripts: TranscriptStore, answerer: KBAnswerer):
        self.transcripts, self.answerer = transcripts, answerer

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
        answer = self.answerer.respond(message.text, message.payload)
        self.transcripts.append(
            conversation_id,
            message.channel,
            "bot",
            _plain_text(answer),
            payload=[r.model_dump(mode="json") for r in answer.replies],
            kb_id=answer.kb_id,
            band=answer.band,
            scores=[{"kb_id": c.kb_id, "score": round(c.confidence, 4)} for c in answer.candidates],
        )
        return Turn(conversation_id, answer)


def _plain_text(answer: Answer) -> str:
    """A readable one-line rendering of the replies for transcript search and export."""
    parts = []
    for reply in answer.replies:
        if reply.type == "kb_card":
            parts.append(f"【{reply.title}】{reply.summary}")
        elif reply.type == "buttons":
            parts.append(reply.text + " " + " / ".join(b.title for b in reply.buttons))
        else:
            parts.append(reply.text)
    return "\n".join(parts)
