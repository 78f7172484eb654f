"""The human queue: routing, standing, accept/transfer/return/close, overflow, ratings — on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from bot.escalation import AgentRef, EscalationError, EscalationRow, EscalationService
from bot.live import LocalHub
from bot.queues import QueueConfig
from bot.transcripts import TranscriptStore
from tests.conftest import always_open
from zhixun.database import make_engine

DEPARTMENTS = {"passport.renew": "公安局出入境管理局", "pension.claim": "人力资源和社会保障局"}
WANG, LI, ZHAO = AgentRef("wangfang", "王芳"), AgentRef("lilei", "李磊"), AgentRef("zhao", "赵敏", capacity=1)


@pytest.fixture
def service(database_url: str, tmp_path: Path) -> EscalationService:
    engine = make_engine(database_url)
    transcripts = TranscriptStore(engine)
    transcripts.create_tables()
    queues = QueueConfig.load(always_open(tmp_path / "queues.yml"))
    escalations = EscalationService(engine, transcripts, queues, LocalHub(), DEPARTMENTS.get)
    escalations.create_tables()
    return escalations


def conversation(service: EscalationService) -> str:
    return service.transcripts.open_conversation("web")


def events(service: EscalationService, conversation_id: str) -> list[str]:
    return [line.payload["event"] for line in service.transcripts.lines(conversation_id) if line.role == "system"]


def test_routed_to_the_items_department_else_the_general_queue(service: EscalationService):
    passport = service.request(conversation(service), "requested", "passport.renew")
    unknown = service.request(conversation(service), "repeated_miss", None)
    assert passport is not None and passport.queue_id == "police" and passport.department == "公安局出入境管理局"
    assert unknown is not None and unknown.queue_id == "general"
    assert service.request("no-such-conversation", "requested", None) is None


def test_a_second_request_while_queued_is_the_same_item(service: EscalationService):
    cid = conversation(service)
    first = service.request(cid, "requested", "pension.claim")
    again = service.request(cid, "complaint", "pension.claim")
    assert first is not None and again is not None and again.id == first.id
    assert events(service, cid) == ["escalation"]


def test_position_counts_those_ahead_in_the_same_queue(service: EscalationService):
    items = [service.request(conversation(service), "requested", "pension.claim") for _ in range(3)]
    service.request(conversation(service), "requested", "passport.renew")  # another queue
    standings = [service.standing(item) for item in items if item]
    assert [s.position for s in standings] == [1, 2, 3]
    assert standings[2].minutes > standings[0].minutes and standings[0].queue.name.startswith("人社")


def test_exactly_one_of_many_agents_accepts(service: EscalationService):
    item = service.request(conversation(service), "requested", "pension.claim")
    assert item is not None
    agents = [AgentRef(f"agent{i}", f"坐席{i}") for i in range(8)]

    def accept(agent: AgentRef) -> str:
        try:
            return service.accept(item.id, agent).agent or ""
        except EscalationError as exc:
            return exc.code

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(accept, agents))
    winners = [r for r in results if r.startswith("agent")]
    assert len(winners) == 1 and results.count("already_taken") == 7
    assert service.open_for(item.conversation_id).agent == winners[0]  # type: ignore[union-attr]


def test_the_whole_journey_is_in_the_transcript_in_order(service: EscalationService):
    cid = conversation(service)
    item = service.request(cid, "requested", "passport.renew", {"scenario_answers": {"case": "renew"}})
    assert item is not None and item.context["scenario_answers"] == {"case": "renew"}
    service.accept(item.id, WANG)
    service.say(item.id, WANG, "您好，我是王芳，请问护照是过期了吗？")
    with pytest.raises(EscalationError):
        service.say(item.id, LI, "我不是接待人")  # only the holder speaks
    moved = service.transfer(item.id, WANG, queue_id="hrss", note="市民还要问退休")
    assert moved.status == "waiting" and moved.queue_id == "hrss" and moved.agent is None
    service.accept(item.id, LI)
    closed = service.close(item.id, LI, "已解答护照换发与退休申领", "咨询")
    assert closed.status == "closed" and service.open_for(cid) is None
    assert service.rate(item.id, cid, 5, "很耐心")
    assert not service.rate(item.id, cid, 1)  # once
    assert events(service, cid) == ["escalation", "accept", "transfer", "accept", "close", "rating"]
    agent_lines = [line for line in service.transcripts.lines(cid) if line.role == "agent"]
    assert agent_lines[0].payload["agent_name"] == "王芳"


def test_transfer_to_a_named_colleague_only_they_can_accept(service: EscalationService):
    item = service.request(conversation(service), "requested", None)
    assert item is not None
    service.accept(item.id, WANG)
    service.transfer(item.id, WANG, to_agent=LI, note="请李磊跟进")
    with pytest.raises(EscalationError, match="已被其他"):
        service.accept(item.id, ZHAO)
    assert service.accept(item.id, LI).agent == "lilei"


def test_capacity_limits_concurrent_chats(service: EscalationService):
    first, second = (service.request(conversation(service), "requested", None) for _ in range(2))
    assert first and second
    service.accept(first.id, ZHAO)
    with pytest.raises(EscalationError) as refused:
        service.accept(second.id, ZHAO)
    assert refused.value.code == "at_capacity"


def test_returned_to_the_bot(service: EscalationService):
    cid = conversation(service)
    item = service.request(cid, "requested", None)
    assert item is not None
    service.accept(item.id, WANG)
    assert service.return_to_bot(item.id, WANG).status == "returned"
    assert service.status(cid) == "bot"


def test_long_waits_overflow_to_the_general_queue_once(service: EscalationService):
    item = service.request(conversation(service), "requested", "pension.claim")
    assert item is not None and item.queue_id == "hrss"
    assert service.overflow() == []
    with Session(service.engine) as session, session.begin():
        session.execute(
            update(EscalationRow)
            .where(EscalationRow.id == item.id)
            .values(queued_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=6))
        )
    with ThreadPoolExecutor(3) as pool:  # three workers checking at once
        moved = [m for batch in pool.map(lambda _: service.overflow(), range(3)) for m in batch]
    assert [m.id for m in moved] == [item.id] and moved[0].queue_id == "general"
    assert events(service, item.conversation_id).count("overflow") == 1


def test_after_hours_requests_wait_for_the_next_day_first_in_line(database_url: str, tmp_path: Path):
    engine = make_engine(database_url)
    transcripts = TranscriptStore(engine)
    transcripts.create_tables()
    closed = tmp_path / "closed.yml"
    closed.write_text(
        "general: general\nqueues:\n  - id: general\n    name: 综合坐席\n    departments: []\n    hours: []\n",
        encoding="utf-8",
    )
    service = EscalationService(engine, transcripts, QueueConfig.load(closed), LocalHub(), DEPARTMENTS.get)
    service.create_tables()
    early = service.request(transcripts.open_conversation("web"), "requested", None)
    late = service.request(transcripts.open_conversation("web"), "requested", None)
    assert early and late and early.after_hours and late.after_hours
    service.leave_callback(late, "13812345678")
    assert [e.id for e in service.waiting()][:2] == [early.id, late.id]
    assert service.get(late.id).callback_phone == "13812345678"  # type: ignore[union-attr]


def test_the_queue_survives_a_restart(service: EscalationService, tmp_path: Path):
    waiting = service.request(conversation(service), "requested", None)
    held = service.request(conversation(service), "requested", "passport.renew")
    assert waiting and held
    service.accept(held.id, WANG)
    again = EscalationService(
        make_engine(str(service.engine.url.render_as_string(hide_password=False))),
        service.transcripts,
        service.queues,
        LocalHub(),
        DEPARTMENTS.get,
    )
    assert [e.id for e in again.waiting()] == [waiting.id]
    assert [e.id for e in again.held_by("wangfang")] == [held.id]
