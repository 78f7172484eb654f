"""What custom actions can reach: the KB, the transcript and the stores they write to."""

from __future__ import annotations

from dataclasses import dataclass

from bot.answers import KBAnswerer
from bot.appointments import Appointments
from bot.checklists import ChecklistStore
from bot.escalation import EscalationService
from knowledge_base.retrieval import Retriever
from knowledge_base.schema import Entry
from knowledge_base.store import KBStore


@dataclass
class Dialogue:
    retriever: Retriever
    answerer: KBAnswerer
    kb_store: KBStore
    escalations: EscalationService
    checklists: ChecklistStore
    appointments: Appointments

    def entry(self, kb_id: str | None) -> Entry | None:
        return self.retriever.entry(kb_id) if kb_id else None

    def titles(self) -> dict[str, str]:
        return {e.id: e.title for e in self.retriever.index.entries}
