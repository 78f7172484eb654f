"""The agent's desk: what an agent may see of the queues and conversations, shaped for the console.

Authorisation lives here, next to the data it guards: an agent sees the queues of
their departments (supervisors and admins see all), and opens a conversation
only from those queues, or one they hold or that was transferred to them by
name. Transcripts are masked (身份证号, phone numbers) unless the account has
`view_pii`, and every opening of a transcript is written to the audit log.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from bot.audit import AuditLog
from bot.escalation import AgentRef, Escalation, EscalationError, EscalationService
from bot.privacy import mask_text
from bot.transcripts import TranscriptLine, TranscriptStore
from console.accounts import Account
from knowledge_base.retrieval import Retriever


def agent_ref(account: Account) -> AgentRef:
    return AgentRef(account.username, account.display_name, account.capacity)


class Desk:
    def __init__(
        self, escalations: EscalationService, transcripts: TranscriptStore, retriever: Retriever, audit: AuditLog
    ):
        self.escalations, self.transcripts, self.retriever, self.audit = escalations, transcripts, retriever, audit

    def queue_ids(self, account: Account) -> list[str]:
        return [q for q in self.escalations.queues.queues if account.serves(q)]

    def may_open(self, account: Account, escalation: Escalation) -> bool:
        return (
            account.serves(escalation.queue_id)
            or escalation.agent == account.username
            or escalation.target_agent == account.username
        )

    def open(self, account: Account, escalation_id: int) -> Escalation:
        escalation = self.escalations.get(escalation_id)
        if escalation is None:
            raise EscalationError("unknown_escalation", "找不到这个会话。")
        if not self.may_open(account, escalation):
            raise EscalationError("wrong_department", "这个会话不属于您所在部门的队列。")
        return escalation

    def board(self, account: Account) -> dict[str, Any]:
        """The queues this account serves, with who is waiting, and the conversations it holds."""
        queue_ids = self.queue_ids(account)
        waiting = [
            e
            for e in self.escalations.waiting()
            if (e.queue_id in queue_ids and e.target_agent in (None, account.username))
            or e.target_agent == account.username
        ]
        queues = self.escalations.queues.queues
        return {
            "queues": [
                {
                    "id": q,
                    "name": queues[q].name,
                    "waiting": [self.summary(account, e) for e in waiting if e.queue_id == q],
                }
                for q in queue_ids
            ],
            "transferred_to_me": [self.summary(account, e) for e in waiting if e.queue_id not in queue_ids],
            "mine": [self.summary(account, e) for e in self.escalations.held_by(account.username)],
        }

    def summary(self, account: Account, escalation: Escalation) -> dict[str, Any]:
        waited = dt.datetime.now(dt.UTC) - escalation.queued_at
        entry = self.retriever.entry(escalation.kb_id) if escalation.kb_id else None
        data = escalation.to_json()
        if not account.can("view_pii") and data["callback_phone"]:
            data["callback_phone"] = mask_text(data["callback_phone"])
        return {
            **data,
            "title": entry.title if entry else None,
            "queue_name": (self.escalations.queues.get(escalation.queue_id) or self.escalations.queues.general).name,
            "waited_seconds": max(0, int(waited.total_seconds())),
        }

    def conversation(self, account: Account, escalation_id: int, client: str | None) -> dict[str, Any]:
        """Everything the agent needs so nothing is asked twice: the transcript, the bot's match and
        other candidates, and the 情形 answers given so far. Audited."""
        escalation = self.open(account, escalation_id)
        lines = self.transcripts.lines(escalation.conversation_id)
        self.audit.record(
            account.username,
            "view",
            f"conversation:{escalation.conversation_id}",
            role=account.role,
            detail={"escalation_id": escalation.id, "masked": not account.can("view_pii")},
            client=client,
        )
        return {
            "escalation": self.summary(account, escalation),
            "lines": [self.line(account, line) for line in lines],
            "match": self._item(escalation.kb_id),
            "candidates": self._candidates(lines),
            "scenario": self._scenario(escalation.context or {}),
        }

    def line(self, account: Account, line: TranscriptLine) -> dict[str, Any]:
        return (line if account.can("view_pii") else line.masked()).to_json()

    def _item(self, kb_id: str | None) -> dict[str, Any] | None:
        entry = self.retriever.entry(kb_id) if kb_id else None
        return {"kb_id": entry.id, "title": entry.title, "department": entry.department} if entry else None

    def _candidates(self, lines: list[TranscriptLine]) -> list[dict[str, Any]]:
        """The bot's ranked guesses on the last turn it scored, best first."""
        scored = next((line.scores for line in reversed(lines) if line.role == "bot" and line.scores), None) or []
        out = []
        for candidate in scored:
            entry = self.retriever.entry(candidate["kb_id"])
            if entry:
                out.append({"kb_id": entry.id, "title": entry.title, "score": candidate["score"]})
        return out

    def _scenario(self, context: dict[str, Any]) -> dict[str, Any] | None:
        entry = self.retriever.entry(context.get("scenario_item") or "") if context.get("scenario_item") else None
        answers = context.get("scenario_answers") or {}
        if entry is None or entry.scenario is None or not answers:
            return None
        asked = []
        for question in entry.scenario.questions:
            chosen = next((o.label for o in question.options if o.id == answers.get(question.id)), None)
            if chosen:
                asked.append({"question": question.ask, "answer": chosen})
        return {"kb_id": entry.id, "title": entry.title, "answers": asked}
