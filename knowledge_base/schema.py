"""The shape of one knowledge-base entry (one service item, 办事指南).

Entries are authored as YAML under `knowledge_base/data/` and stored in SQL;
both sides validate through these models, so a curator's typo is caught
whether it arrives by file import or through the console.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
MIN_QUESTIONS = 8

# Text that betrays an unfinished entry; never shown to a citizen.
PLACEHOLDER_MARKERS = ("TODO", "TBD", "xxx", "XXX", "待补充", "待完善", "此处填写", "示例文本", "lorem")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class Material(_Strict):
    """One document the applicant brings or uploads."""

    name: str = Field(min_length=2)
    form: Literal["original", "copy", "original_and_copy", "electronic", "form"]
    count: int = Field(ge=1, le=20)
    note: str = ""
    sample: str = ""  # URL or /static path of a filled-in sample (填写样表)


class Steps(_Strict):
    online: list[str] = Field(default_factory=list)
    window: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _at_least_one_channel(self) -> Steps:
        if not self.online and not self.window:
            raise ValueError("steps need an online or a window procedure")
        return self


class Image(_Strict):
    """A process diagram or form sample shown inside the answer card."""

    src: str = Field(min_length=1)  # /static/kb/... or https://...
    alt: str = Field(min_length=2)
    caption: str = ""


class Component(_Strict):
    """One item inside a 一件事 theme entry, in the order it is done."""

    id: str
    note: str = Field(min_length=2)


SLUG = r"^[a-z][a-z0-9_]*$"
Conditions = dict[str, list[str]]  # question id -> option ids; all questions must match, any option of each


class Option(_Strict):
    """One answer to a 情形 question: a button label plus words that pick it in free text."""

    id: str = Field(pattern=SLUG)
    label: str = Field(min_length=1, max_length=24)
    synonyms: list[str] = Field(default_factory=list)


class ScenarioQuestion(_Strict):
    id: str = Field(pattern=SLUG)
    ask: str = Field(min_length=4)
    options: list[Option] = Field(min_length=2, max_length=8)
    when: Conditions = Field(default_factory=dict)  # asked only when earlier answers match


class SampleField(_Strict):
    """One line of a filled-in form sample (填写样表)."""

    label: str = Field(min_length=1)
    example: str = Field(min_length=1)


class ScenarioMaterial(Material):
    when: Conditions = Field(default_factory=dict)
    for_item: str = ""  # the component item this document is for (一件事 themes)
    sample_fields: list[SampleField] = Field(default_factory=list)

    @model_validator(mode="after")
    def _forms_have_samples(self) -> ScenarioMaterial:
        if self.form == "form" and not (self.sample or self.sample_fields):
            raise ValueError(f"form {self.name!r} needs a sample or sample_fields")
        return self


class ScenarioNote(_Strict):
    text: str = Field(min_length=4)
    when: Conditions = Field(default_factory=dict)


class Scenario(_Strict):
    """Guided 情形 questions whose answers select the applicant's own checklist.

    Rules, not code: each material and note carries `when` conditions over
    earlier answers, so a curator can add a scenario without touching Python.
    """

    intro: str = Field(min_length=4)
    questions: list[ScenarioQuestion] = Field(min_length=1, max_length=8)
    materials: list[ScenarioMaterial] = Field(min_length=1)
    notes: list[ScenarioNote] = Field(default_factory=list)

    @model_validator(mode="after")
    def _conditions_refer_to_earlier_questions(self) -> Scenario:
        options: dict[str, set[str]] = {}
        for question in self.questions:
            if question.id in options:
                raise ValueError(f"question id {question.id!r} repeated")
            _check_conditions(question.when, options, f"question {question.id}")
            ids = [o.id for o in question.options]
            if len(set(ids)) != len(ids):
                raise ValueError(f"question {question.id}: option ids repeated")
            options[question.id] = set(ids)
        for material in self.materials:
            _check_conditions(material.when, options, f"material {material.name}")
        for note in self.notes:
            _check_conditions(note.when, options, f"note {note.text[:12]}")
        for answers in self.answer_paths():
            if not self.checklist(answers):
                raise ValueError(f"answers {answers} select no material")
        return self

    def next_question(self, answers: dict[str, str]) -> ScenarioQuestion | None:
        for question in self.questions:
            if question.id not in answers and matches(question.when, answers):
                return question
        return None

    def checklist(self, answers: dict[str, str]) -> list[ScenarioMaterial]:
        return [m for m in self.materials if matches(m.when, answers)]

    def notes_for(self, answers: dict[str, str]) -> list[str]:
        return [n.text for n in self.notes if matches(n.when, answers)]

    def situation(self, answers: dict[str, str]) -> str:
        """The chosen options as one title line, e.g. 「便利店 · 不现制现售 · 租赁场地」."""
        labels = []
        for question in self.questions:
            chosen = answers.get(question.id)
            labels += [o.label for o in question.options if o.id == chosen]
        return " · ".join(labels)

    def answer_paths(self) -> list[dict[str, str]]:
        """Every complete set of answers a citizen can give (questions skipped by `when` stay out)."""
        paths: list[dict[str, str]] = [{}]
        done: list[dict[str, str]] = []
        while paths:
            answers = paths.pop()
            question = self.next_question(answers)
            if question is None:
                done.append(answers)
                continue
            paths += [{**answers, question.id: o.id} for o in question.options]
        return done


def matches(conditions: Conditions, answers: dict[str, str]) -> bool:
    return all(answers.get(question) in allowed for question, allowed in conditions.items())


def _check_conditions(conditions: Conditions, known: dict[str, set[str]], where: str) -> None:
    for question, allowed in conditions.items():
        if question not in known:
            raise ValueError(f"{where}: condition on unknown or later question {question!r}")
        unknown = set(allowed) - known[question]
        if unknown or not allowed:
            raise ValueError(f"{where}: unknown options {sorted(unknown)} for question {question!r}")


class Entry(_Strict):
    id: str
    title: str = Field(min_length=2)
    department: str = Field(min_length=2)
    theme: str = Field(min_length=2)
    audience: Literal["citizen", "enterprise"]
    summary: str = Field(min_length=20)
    conditions: list[str] = Field(min_length=1)
    materials: list[Material] = Field(min_length=1)
    steps: Steps
    where: str = Field(min_length=4)
    hours: str = Field(min_length=4)
    fees: str = Field(min_length=2)
    time_limit: str = Field(min_length=2)
    online_link: str = Field(pattern=r"^https?://")
    legal_basis: list[str] = Field(min_length=1)
    related: list[str] = Field(default_factory=list)
    local_note: str = Field(min_length=4)  # where local rules commonly differ
    last_reviewed: dt.date
    questions: list[str] = Field(min_length=MIN_QUESTIONS)
    images: list[Image] = Field(default_factory=list)
    # 一件事 (onething.*) entries only:
    components: list[Component] = Field(default_factory=list)
    joint_application: str = ""
    scenario: Scenario | None = None

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not ID_PATTERN.match(value):
            raise ValueError(f"id {value!r} must look like 'theme.item' in lower case")
        return value

    @field_validator("questions")
    @classmethod
    def _questions_distinct(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for question in value:
            key = normalise_question(question)
            if not key:
                raise ValueError("empty question")
            if key in seen:
                raise ValueError(f"question repeated: {question!r}")
            seen.add(key)
        return value

    @model_validator(mode="after")
    def _onething_shape(self) -> Entry:
        is_theme = self.id.startswith("onething.")
        if is_theme and (len(self.components) < 2 or not self.joint_application):
            raise ValueError("a 一件事 entry needs ≥2 components and joint_application")
        if not is_theme and (self.components or self.joint_application):
            raise ValueError("components/joint_application belong to onething.* entries only")
        if self.id in self.related:
            raise ValueError("an entry cannot be related to itself")
        return self

    @model_validator(mode="after")
    def _no_placeholders(self) -> Entry:
        text = self.model_dump_json()
        for marker in PLACEHOLDER_MARKERS:
            if marker in text:
                raise ValueError(f"placeholder text {marker!r} left in entry")
        return self


_PUNCT = re.compile(r"[\s\u3000，。？！、；：“”‘’（）《》【】,.?!;:'\"()\[\]<>~～…—-]+")


def normalise_question(text: str) -> str:
    """Questions that differ only by punctuation, spacing or case count as one."""
    return _PUNCT.sub("", text).lower()
