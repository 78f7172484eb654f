"""A citizen escalates from the chat page and two agents serve them in the console, in real browsers,
with the real Rasa server in the loop; then the transcript proves every step, and its hash chain holds."""

from __future__ import annotations

import pytest
from sqlalchemy import text as sql

from tests.conftest import PASSWORD, DialogueServer

pytestmark = [pytest.mark.slow, pytest.mark.browser]
WAIT = 20_000


def agent_page(browser, server: DialogueServer, username: str):
    page = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900}).new_page()
    page.goto(server.base_url + "/console")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#live:text('实时连接正常')", timeout=WAIT)
    return page


def test_citizen_escalates_two_agents_serve_and_the_transcript_proves_it(browser, dialogue_server: DialogueServer):
    app = dialogue_server.app
    accounts = app.state.console_auth.accounts  # type: ignore[attr-defined]
    accounts.create("wangfang", "王芳", PASSWORD, "agent", departments=["general"])
    accounts.create("lilei", "李磊", PASSWORD, "agent", departments=["police"])

    citizen = browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844}, is_mobile=True).new_page()
    citizen.goto(dialogue_server.base_url + "/")
    citizen.wait_for_selector("#status:text('在线')")
    citizen.fill("#input", "转人工")
    citizen.click("#send")
    citizen.wait_for_selector(".msg.bot:has-text('已为您转接人工客服')", timeout=WAIT)
    conversation_id = citizen.evaluate("sessionStorage.getItem('zhixun.conversation')")
    mine = f"[data-conversation-id='{conversation_id}']"  # other tests may have left citizens waiting

    wang = agent_page(browser, dialogue_server, "wangfang")
    item = wang.locator(f"[data-queue-id=general] .item{mine}")
    item.wait_for(timeout=WAIT)
    item.locator("button.accept").click()
    wang.wait_for_selector("#transcript li.citizen:has-text('转人工')", timeout=WAIT)
    citizen.wait_for_selector(".msg.notice:has-text('王芳')", timeout=WAIT)

    wang.fill("#reply-text", "您好，我是王芳，请问想办理什么业务？")
    wang.press("#reply-text", "Enter")
    citizen.wait_for_selector(".msg.agent:has-text('我是王芳')", timeout=WAIT)
    bot_replies = citizen.locator(".msg.bot").count()
    citizen.fill("#input", "我想给孩子办护照")
    citizen.click("#send")
    wang.wait_for_selector("#transcript li.citizen:has-text('给孩子办护照')", timeout=WAIT)
    citizen.wait_for_function("document.querySelectorAll('.msg.user.pending').length === 0")
    assert citizen.locator(".msg.bot").count() == bot_replies  # the bot is silent while an agent holds the chat

    wang.select_option("#transfer-target", "queue:police")
    wang.fill("#transfer-note", "未成年人首次申领护照")
    wang.click("#transfer")
    citizen.wait_for_selector(".msg.notice:has-text('已为您转接')", timeout=WAIT)

    li = agent_page(browser, dialogue_server, "lilei")
    moved = li.locator(f"[data-queue-id=police] .item{mine}")
    moved.wait_for(timeout=WAIT)
    assert "未成年人首次申领护照" in moved.inner_text()
    moved.locator("button.accept").click()
    li.wait_for_selector("#transcript li.agent:has-text('我是王芳')", timeout=WAIT)  # the whole history
    li.fill("#reply-text", "您好，我是出入境的李磊，未成年人办护照需要监护人陪同。")
    li.press("#reply-text", "Enter")
    citizen.wait_for_selector(".msg.agent:has-text('李磊')", timeout=WAIT)
    li.fill("#close-summary", "已告知未成年人护照首次申领材料")
    li.click("#close")

    citizen.wait_for_selector(".rating", timeout=WAIT)
    citizen.click(".rating button[data-score='5']")
    citizen.fill(".rating textarea", "很耐心")
    citizen.click(".rating button.submit")
    citizen.wait_for_selector(".msg:has-text('感谢您的评价')", timeout=WAIT)

    transcripts = app.state.transcripts  # type: ignore[attr-defined]
    lines = transcripts.lines(conversation_id)
    steps = [(line.role, (line.payload or {}).get("event") if line.role == "system" else None) for line in lines]
    assert [s for s in steps if s[0] == "system"] == [
        ("system", "escalation"),
        ("system", "accept"),
        ("system", "transfer"),
        ("system", "accept"),
        ("system", "close"),
        ("system", "rating"),
    ]
    roles = [role for role, _ in steps]
    assert roles.index("agent") < roles.index("system", roles.index("agent"))  # 王芳 spoke before the transfer
    assert [line.seq for line in lines] == list(range(1, len(lines) + 1))
    assert transcripts.verify(conversation_id).ok

    with transcripts.engine.begin() as connection:
        connection.execute(
            sql("UPDATE transcript_messages SET text = '我没说过这句' WHERE conversation_id = :c AND seq = 3"),
            {"c": conversation_id},
        )
    report = transcripts.verify(conversation_id)
    assert not report.ok and report.problems[0].seq == 3
