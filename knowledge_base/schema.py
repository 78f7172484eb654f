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
