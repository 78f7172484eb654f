"""The chat page in a real browser (Debian's chromium driven by Playwright), phone-sized."""

from __future__ import annotations

import pytest

from tests.conftest import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture
def page(browser, live_server: LiveServer):
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, locale="zh-CN"
    )
    page = context.new_page()
    page.goto(live_server.base_url + "/")
    page.wait_for_selector("#status:text('在线')")
    yield page
    context.close()


def say(page, text: str) -> None:
    page.fill("#input", text)
    page.click("#send")


def test_question_gets_an_answer_card_with_related_buttons(page):
    say(page, "护照过期了怎么换")
    card = page.locator("article.card").first
    card.wait_for(timeout=15_000)
    assert card.get_attribute("data-kb-id") == "passport.renew"
    assert "普通护照换发" in card.locator("h2").inner_text()
    for heading in ("办理条件", "所需材料"):
        assert heading in card.inner_text()
    assert card.locator("a.go").get_attribute("href").startswith("https://")
    buttons = page.locator(".choices button")
    assert buttons.count() >= 1
    buttons.first.click()  # a related item: answered by pressing, no typing
    page.locator("article.card").nth(1).wait_for(timeout=15_000)


def test_hot_question_shortcut_and_suggestions(page):
    page.click("#hot button:has-text('孩子出生后要办哪些手续')")
    card = page.locator("article.card").first
    card.wait_for(timeout=15_000)
    assert card.get_attribute("data-kb-id") == "onething.birth"
    say(page, "护照")
    page.locator(".msg.bot").last.wait_for(timeout=15_000)
    page.wait_for_function("document.querySelectorAll('.msg.user.pending').length === 0")
    last = page.locator(".log > *").last
    assert last.locator("button").count() >= 1  # guesses or related items, as buttons


def test_typed_script_is_shown_as_text(page):
    attack = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">护照'
    say(page, attack)
    page.wait_for_function("document.querySelectorAll('.msg.user.pending').length === 0", timeout=15_000)
    assert page.locator(".msg.user").last.inner_text() == attack
    assert page.evaluate("window.__pwned") is None
    assert page.locator(".log img[src='x']").count() == 0


def test_embed_script_adds_the_chat_to_a_portal_page(browser, live_server: LiveServer):
    context = browser.new_context()
    page = context.new_page()
    # A portal page (intercepted; the app has no such path). It is same-host because Chromium's
    # local-network-access rules block cross-origin loads of a loopback address.
    portal = live_server.base_url + "/portal-demo"
    html = f'<html><body><h1>市政务服务网</h1><script src="{live_server.base_url}/embed.js"></script></body></html>'
    page.route(portal, lambda route: route.fulfill(content_type="text/html; charset=utf-8", body=html))
    page.goto(portal)
    page.click("text=智能咨询")
    frame = page.frame_locator("iframe[title*='智询']")
    frame.locator("#status:text('在线')").wait_for(timeout=15_000)
    context.close()


def test_chat_survives_a_network_loss(page):
    page.context.set_offline(True)
    page.wait_for_selector("#status:has-text('网络已断开')", timeout=15_000)
    say(page, "个税退税多久到账")  # typed while offline: kept and sent after the reconnect
    page.context.set_offline(False)
    page.wait_for_selector("#status:text('在线')", timeout=30_000)
    card = page.locator("article.card").first
    card.wait_for(timeout=15_000)
    assert card.get_attribute("data-kb-id") == "tax.individual_refund"
    assert page.locator(".msg.user").count() == 1


@pytest.fixture
def dialogue_page(browser, dialogue_server):
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, locale="zh-CN", accept_downloads=True
    )
    page = context.new_page()
    page.goto(dialogue_server.base_url + "/")
    page.wait_for_selector("#status:text('在线')")
    yield page
    context.close()


def test_food_licence_scenario_by_clicking_then_pdf(dialogue_page, tmp_path):
    """A citizen taps through the 食品经营许可 questions and downloads their checklist as a PDF."""
    import pypdf

    from knowledge_base import files

    page = dialogue_page
    entry = next(e for e in files.load_directory(require_coverage=False) if e.id == "foodlicense.business")
    scenario = entry.scenario
    assert scenario is not None
    say(page, "食品经营许可证怎么申请")
    for answered in range(len(scenario.questions) + 1):
        page.wait_for_function(
            f"document.querySelectorAll('.buttons p').length && "
            f"([...document.querySelectorAll('.buttons p')].filter(p => p.textContent.includes('问）')).length > {answered}"
            f" || document.querySelector('article.checklist'))",
            timeout=30_000,
        )
        if page.locator("article.checklist").count():
            break
        box = page.locator(".buttons", has_text="问）").last
        asked = box.locator("p").inner_text()
        question = next(q for q in scenario.questions if q.ask in asked)
        # A convenience store that is rented; otherwise the first option.
        wanted = {"convenience", "rented"}
        option = next((o for o in question.options if o.id in wanted), question.options[0])
        box.locator("button", has_text=option.label).first.click()
    checklist = page.locator("article.checklist")
    checklist.wait_for(timeout=30_000)
    assert "便利店" in checklist.locator(".dept").inner_text()
    names = [li.inner_text().split("\n")[0] for li in checklist.locator("ol > li").all()]
    assert names
    with page.expect_download() as download_info:
        checklist.locator("a", has_text="下载PDF").click()
    path = tmp_path / "checklist.pdf"
    download_info.value.save_as(path)
    text = "".join(p.extract_text() for p in pypdf.PdfReader(path).pages).replace("\n", "").replace(" ", "")
    for name in names:
        assert name.split("原件")[0].split("复印件")[0][:6] in text, name
    assert "便利店" in text
