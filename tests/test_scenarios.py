"""Guided scenarios: the KB's rules, free-text answers, and what the checklist holds."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.actions.scenario import match_option
from bot.checklists import build
from knowledge_base import files
from knowledge_base.schema import Scenario

KB = {e.id: e for e in files.load_directory(require_coverage=False)}
REQUIRED = [
    "foodlicense.business",
    "onething.open_restaurant",
    "onething.open_company",
    "onething.birth",
    "passport.apply",
    "hpf.withdraw",
    "retire.apply",
    "realestate.transfer",
    "marriage.register",
    "residence_permit.apply",
    "medins.offsite",
    "unemp.benefit",
    "disability.card",
    "bizlicense.individual",
    "idcard.apply",
]


def test_the_complex_items_have_scenarios():
    assert all(KB[i].scenario for i in REQUIRED)
    assert sum(1 for e in KB.values() if e.scenario) >= 15


@pytest.mark.parametrize("kb_id", [i for i, e in KB.items() if e.scenario])
def test_every_answer_path_gives_a_checklist_with_samples(kb_id: str):
    entry = KB[kb_id]
    assert entry.scenario is not None
    titles = {e.id: e.title for e in KB.values()}
    for answers in entry.scenario.answer_paths():
        checklist = build(entry, answers, titles, kb_version=1)
        assert checklist.materials and checklist.situation
        forms = [m for m in checklist.materials if m.form == "form"]
        assert all(m.sample_fields or m.sample for m in forms)


def test_food_licence_covers_the_situations_the_issue_names():
    scenario = KB["foodlicense.business"].scenario
    assert scenario is not None
    labels = " ".join(o.label + " ".join(o.synonyms) for q in scenario.questions for o in q.options)
    for word in ("超市", "便利店", "批发", "网", "现制", "婴幼儿", "保健", "租"):
        assert word in labels, word


def _question(kb_id: str, qid: str):
    scenario = KB[kb_id].scenario
    assert scenario is not None
    return next(q for q in scenario.questions if q.id == qid)


@pytest.mark.parametrize(
    ("text", "intent", "expected"),
    [
        ("有招牌", "inform", "yes"),
        ("不要招牌", "inform", "no"),
        ("是的", "affirm", "yes"),
        ("不是", "deny", "no"),
    ],
)
def test_free_text_answers_pick_an_option(text: str, intent: str, expected: str):
    question = _question("onething.open_store", "signboard")
    option = match_option(question, text, intent)
    assert option is not None and option.id == expected


def test_a_negated_answer_does_not_pick_the_positive_option():
    question = _question("onething.open_store", "tobacco")
    option = match_option(question, "不卖烟", "inform")
    assert option is not None and option.id == "no"


def test_unrelated_text_picks_nothing():
    question = _question("onething.open_store", "signboard")
    assert match_option(question, "今天天气不错", "inform") is None


def test_rules_must_refer_to_earlier_questions_and_select_something():
    base = {
        "intro": "先问您几个问题。",
        "questions": [
            {"id": "kind", "ask": "您办哪一类？", "options": [{"id": "a", "label": "甲"}, {"id": "b", "label": "乙"}]}
        ],
    }
    with pytest.raises(ValidationError, match="unknown or later question"):
        Scenario.model_validate(
            {**base, "materials": [{"name": "身份证", "form": "original", "count": 1, "when": {"nope": ["a"]}}]}
        )
    with pytest.raises(ValidationError, match="select no material"):
        Scenario.model_validate(
            {**base, "materials": [{"name": "身份证", "form": "original", "count": 1, "when": {"kind": ["a"]}}]}
        )
    with pytest.raises(ValidationError, match="needs a sample"):
        Scenario.model_validate({**base, "materials": [{"name": "申请表", "form": "form", "count": 1}]})
