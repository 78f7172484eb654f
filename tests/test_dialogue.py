"""Whole conversations through the running app and a real Rasa server (trained model, HTTP, action endpoint)."""

from __future__ import annotations

import io
import os
import signal
import time

import httpx
import pypdf
import pytest

from bot.messages import parse_payload, payload
from knowledge_base import files
from tests.conftest import DialogueServer

pytestmark = pytest.mark.slow
KB = {e.id: e for e in files.load_directory(require_coverage=False)}


class Chat:
    def __init__(self, server: DialogueServer):
        self.server, self.conversation_id = server, None
        self.last: dict = {}

    def say(self, text: str, payload: str | None = None) -> dict:
        body: dict = {"text": text}
        if self.conversation_id:
            body["conversation_id"] = self.conversation_id
        if payload:
            body["payload"] = payload
        response = httpx.post(self.server.base_url + "/api/chat", json=body, timeout=60)
        assert response.status_code == 200, response.text
        self.last = response.json()
        self.conversation_id = self.last["conversation_id"]
        return self.last

    def press(self, title_part: str) -> dict:
        """Press the button whose title contains `title_part` in the last replies."""
        buttons = [b for r in self.last["replies"] for b in r.get("buttons", []) if b["payload"]]
        exact = [b for b in buttons if b["title"] == title_part]
        for button in exact or [b for b in buttons if title_part in b["title"]]:
            return self.say(button["title"], button["payload"])
        raise AssertionError(f"no button {title_part!r} in {self.buttons()}")

    def buttons(self) -> list[str]:
        return [b["title"] for r in self.last["replies"] for b in r.get("buttons", [])]

    def texts(self) -> str:
        return "\n".join(r.get("text", "") for r in self.last["replies"])

    def question(self) -> str:
        asked = [r["text"] for r in self.last["replies"] if r["type"] == "buttons" and "问）" in r["text"]]
        return asked[-1] if asked else ""

    def checklist(self) -> dict | None:
        return next((r for r in self.last["replies"] if r["type"] == "checklist"), None)


@pytest.fixture
def chat(dialogue_server: DialogueServer) -> Chat:
    return Chat(dialogue_server)


def test_greeting_says_what_the_bot_can_do(chat: Chat):
    chat.say("你好")
    assert "您好" in chat.texts() and "材料" in chat.texts()
    assert len(chat.buttons()) >= 4


def test_food_licence_scenario_by_free_text_gives_the_filing_checklist(chat: Chat, dialogue_server: DialogueServer):
    chat.say("我想开个小超市，要办食品经营许可证")
    assert chat.question(), chat.last
    scenario_id = chat.last["kb_id"]
    scenario = KB[scenario_id].scenario
    assert scenario is not None
    answers = 0
    # Free-text answers, as a citizen would type them; each must move the guide on.
    for reply in ["就是卖包装食品的便利店", "不卖烟", "有招牌", "租的", "不卖婴儿奶粉和保健品", "租的"]:
        if chat.checklist():
            break
        before = chat.question()
        chat.say(reply)
        if chat.question() != before or chat.checklist():
            answers += 1
    card = chat.checklist()
    assert card is not None, chat.last
    listed = card["checklist"]
    expected = scenario.checklist(listed["answers"])
    assert [m["name"] for m in listed["materials"]] == [m.name for m in expected]
    assert listed["answers"].get(scenario.questions[0].id) in {"prepack", "convenience"}
    # The PDF and the print page carry the same materials, the situation and the KB version.
    pdf = httpx.get(dialogue_server.base_url + card["pdf_url"], timeout=30)
    assert pdf.headers["content-type"] == "application/pdf"
    text = "".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf.content)).pages)
    squashed = text.replace("\n", "").replace(" ", "")
    for material in listed["materials"]:
        assert material["name"][:8] in squashed, material["name"]
    assert f"第{listed['kb_version']}版" in squashed
    page = httpx.get(dialogue_server.base_url + card["print_url"], timeout=30).text
    assert listed["situation"] in page and "window.print()" in page
    assert "预约窗口办理" in chat.buttons()


def test_scenario_by_buttons_and_follow_up_inside_it(chat: Chat):
    chat.say("我想开个饭店需要办哪些证")
    assert chat.question(), chat.last
    kb_id = chat.last["kb_id"]
    asked = chat.question()
    chat.say("要多久")
    assert KB[kb_id].time_limit[:10] in chat.texts()
    assert chat.question() == asked, "after a follow-up the same question is asked again"
    for _ in range(8):
        if chat.checklist():
            break
        first = next(r for r in chat.last["replies"] if r["type"] == "buttons" and "问）" in r["text"])
        chat.say(first["buttons"][0]["title"], first["buttons"][0]["payload"])
    assert chat.checklist() is not None


def test_leaving_a_scenario(chat: Chat):
    chat.say("护照怎么办理")
    assert chat.question()
    chat.say("退出")
    assert "退出" in chat.texts() and not chat.question()


def test_follow_ups_refer_to_the_item_being_discussed(chat: Chat):
    chat.say(
        "护照过期了怎么换",
    )
    kb_id = chat.last["kb_id"]
    assert kb_id and kb_id.startswith("passport.")
    if chat.question():
        chat.say("退出")
    chat.say("要钱吗")
    assert KB[kb_id].fees[:8] in chat.texts()
    chat.say("在哪里办")
    assert KB[kb_id].where[:8] in chat.texts()


def test_related_items_are_pushed_after_an_answer(chat: Chat):
    chat.say("出生医学证明怎么办")
    pushed = [
        parse_payload(b["payload"])[1].get("kb_id")
        for r in chat.last["replies"]
        for b in r.get("buttons", [])
        if b["payload"]
    ]
    assert "hukou.newborn" in pushed


def test_asking_for_a_person_records_the_handoff(chat: Chat, dialogue_server: DialogueServer):
    chat.say("转人工")
    assert chat.last["handoff"] == "requested" and "人工" in chat.texts()
    escalations = dialogue_server.app.state.dialogue.escalations
    assert escalations.status(chat.conversation_id) == "escalation_requested"
    lines = dialogue_server.app.state.transcripts.lines(chat.conversation_id)
    assert any(line.role == "system" and "转人工" in line.text for line in lines)


def test_two_misses_in_a_row_hand_off(chat: Chat):
    chat.say("请问宠物狗的免疫登记怎么办理")  # not in the KB: a guess, not an answer
    assert chat.last["band"] != "answer" and chat.last["handoff"] is None
    chat.say("请问办理游艇驾驶证需要什么条件")
    assert chat.last["handoff"] == "repeated_miss"


def test_book_list_and_cancel_an_appointment(chat: Chat):
    chat.say("护照怎么换")
    if chat.question():
        chat.say("退出")
    chat.say("我想预约")
    if "请选择办理地点" in chat.texts():
        chat.press("市政务服务中心")
    assert "请选择日期" in chat.texts(), chat.last
    chat.press(chat.buttons()[0])
    assert "时段" in chat.texts()
    chat.press(chat.buttons()[0][:11])
    assert "预约成功" in chat.texts() and "预约码" in chat.texts()
    assert "请带齐以下材料" in chat.texts()
    chat.say("查一下我的预约")
    assert "您的预约" in chat.texts()
    chat.press("取消")
    assert "已为您取消预约" in chat.texts()
    chat.say("我的预约")
    assert "没有待办理的预约" in chat.texts()


def test_action_endpoint_refuses_callers_without_the_token(dialogue_server: DialogueServer):
    response = httpx.post(dialogue_server.base_url + "/webhook", json={"next_action": "action_greet"}, timeout=10)
    assert response.status_code == 403
    token = dialogue_server.settings.rasa.action_token
    url = f"{dialogue_server.base_url}/webhook?token={token}"
    unknown = httpx.post(url, json={"next_action": "action_nope", "tracker": {}}, timeout=10)
    assert unknown.status_code == 404 and "action_nope" in unknown.json()["error"]
    garbage = httpx.post(url, json={"next_action": "action_greet", "tracker": "x"}, timeout=10)
    assert garbage.status_code == 400


def test_killing_rasa_is_survived(chat: Chat, dialogue_server: DialogueServer):
    """Rasa dies mid-scenario: the citizen still gets KB answers; Rasa comes back with the conversation intact."""
    chat.say("按我的情况生成材料清单", payload("ask_service", kb_id="idcard.apply", mode="guide"))
    asked = chat.question()
    assert asked
    rasa = dialogue_server.rasa
    restarts = rasa.restarts
    os.kill(rasa.pid, signal.SIGKILL)
    time.sleep(0.5)
    chat.say("护照丢了怎么补办")
    assert chat.last["kb_id"] == "passport.lost" and chat.last["band"] == "answer"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (rasa.restarts > restarts and rasa.healthy()):
        time.sleep(1)
    assert rasa.restarts > restarts and rasa.healthy()
    health = httpx.get(dialogue_server.base_url + "/health", timeout=10).json()
    assert health["dialogue"] == "rasa"
    first = next(r for r in chat.last["replies"] if r["type"] in ("buttons", "kb_card"))
    assert first
    chat.say("要多久")  # the dialogue state (scenario in progress) lives in the tracker store, not in Rasa's memory
    assert chat.question() == asked


SCENARIO_ITEMS = sorted(i for i, e in KB.items() if e.scenario)


@pytest.mark.parametrize("kb_id", SCENARIO_ITEMS)
def test_each_scenario_runs_to_its_checklist(dialogue_server: DialogueServer, kb_id: str):
    """Every scenario, started from its button and answered with the last option each time (the first
    options are walked in the browser test), ends in the checklist its rules select."""
    chat = Chat(dialogue_server)
    scenario = KB[kb_id].scenario
    assert scenario is not None
    chat.say("按我的情况生成材料清单", payload("ask_service", kb_id=kb_id, mode="guide"))
    answers: dict[str, str] = {}
    for _ in range(len(scenario.questions) + 1):
        if chat.checklist():
            break
        question = scenario.next_question(answers)
        assert question is not None and question.ask in chat.question(), chat.last
        option = question.options[-1]
        answers[question.id] = option.id
        chat.press(option.label)
    card = chat.checklist()
    assert card is not None, chat.last
    assert card["checklist"]["answers"] == answers
    assert [m["name"] for m in card["checklist"]["materials"]] == [m.name for m in scenario.checklist(answers)]


def test_opening_a_restaurant_is_a_question_not_a_booking(chat: Chat):
    chat.say("我想开个饭店")
    assert "请选择办理地点" not in chat.texts()
    assert chat.last["kb_id"] in {"onething.open_restaurant", "foodlicense.business", "foodlicense.small_catering"}


def test_booking_without_an_item_asks_which_one(chat: Chat):
    chat.say("我要预约")
    assert "您要预约办理哪个事项" in chat.texts()
    assert "没有理解" not in chat.texts()
    chat.press("普通护照换发")
    assert "为您预约「普通护照换发」" in chat.texts()
