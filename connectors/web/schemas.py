"""Public JSON shapes of the web chat API. Stable: later versions add fields, never rename these."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from bot.messages import RichMessage

CONVERSATION_ID = r"^[0-9a-f]{32}$"


class ChatRequest(BaseModel):
    conversation_id: str | None = Field(
        default=None, pattern=CONVERSATION_ID, description="Omit to start a new conversation."
    )
    text: str = Field(description="What the citizen typed (1 to `chat.max_text_chars` characters).")
    payload: str | None = Field(
        default=None, max_length=200, description="The `payload` of a button the citizen pressed, if any."
    )


class ScoredCandidate(BaseModel):
    kb_id: str
    score: float = Field(description="Calibrated confidence, 0..1, that this item answers the question.")


class ChatResponse(BaseModel):
    conversation_id: str
    replies: list[RichMessage]
    kb_id: str | None = Field(description="The item answered, or the top candidate; null when nothing matched.")
    band: Literal["answer", "suggest", "none"]
    candidates: list[ScoredCandidate] = Field(description="Ranked best first.")
    handoff: str | None = Field(
        default=None, description="Set when this turn asked for a person: requested, complaint or repeated_miss."
    )
    handled_by: Literal["bot", "queue", "agent"] = Field(
        default="bot", description="Who answers now: the bot, the human queue (waiting), or an agent."
    )


class ErrorBody(BaseModel):
    code: str
    message: str = Field(description="A sentence for the citizen, in Chinese.")


class ErrorResponse(BaseModel):
    error: ErrorBody
