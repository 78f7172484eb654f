"""The curated KB is complete, and the validator catches what a curator can get wrong."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from knowledge_base import files
from knowledge_base.schema import MIN_QUESTIONS

ENTRIES = files.load_directory(require_coverage=False)  # raises with file:line for every problem
BY_ID = {e.id: e for e in ENTRIES}


def test_every_coverage_id_has_exactly_one_entry():
    assert sorted(BY_ID) == sorted(files.coverage_ids())
    assert len(ENTRIES) == len(BY_ID)


def test_entries_match_their_coverage_row():
    import csv

    with files.COVERAGE_FILE.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            entry = BY_ID[row["id"]]
            assert (entry.title, entry.department, entry.audience) == (row["title"], row["department"], row["audience"])
            assert any(
                files.normalise_question(q) == files.normalise_question(row["canonical_question"])
                for q in entry.questions
            ), f"{entry.id} lacks its canonical question"


def test_questions_are_varied():
    for entry in ENTRIES:
        assert len(entry.questions) >= MIN_QUESTIONS
        lengths = sorted(len(q) for q in entry.questions)
        assert lengths[0] <= 8, f"{entry.id}: no short question (citizens type 「护照补办」)"
        assert lengths[-1] >= 18, f"{entry.id}: no long, story-like question"


def test_theme_entries_list_components_in_order():
    themes = [e for e in ENTRIES if e.id.startswith("onething.")]
    assert len(themes) == 10
    for entry in themes:
        assert all(c.id in BY_ID and not c.id.startswith("onething.") for c in entry.components)
        assert len(entry.materials) >= 4, f"{entry.id}: the combined checklist is too short"


def test_images_exist_and_are_svg_or_png():
    media = files.PACKAGE_DIR / "media"
    for entry in ENTRIES:
        paths = [i.src for i in entry.images] + [m.sample for m in entry.materials if m.sample]
        for src in paths:
            assert src.startswith("/kb-media/"), src
            assert (media / src.removeprefix("/kb-media/")).is_file(), f"{entry.id}: missing {src}"


def test_citizen_text_is_simplified_chinese():
    import opencc

    to_simplified = opencc.OpenCC("t2s")
    for entry in ENTRIES:
        text = " ".join([entry.summary, *entry.conditions, entry.local_note])
        assert to_simplified.convert(text) == text, f"{entry.id} has traditional characters"
        assert re.search(r"[\u4e00-\u9fff]", entry.summary)


# --- the validator itself -------------------------------------------------------------------------

GOOD = yaml.safe_load(files.dump_entries([BY_ID["passport.apply"]]))["entries"][0]


def _write(tmp_path: Path, entries: list[dict], name: str = "t.yml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"entries": entries}, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _problems(tmp_path: Path, entries: list[dict]) -> list[str]:
    sourced, problems = files.read_file(_write(tmp_path, entries))
    return [str(p) for p in problems + files.cross_check(sourced)]


@pytest.mark.parametrize("field", ["summary", "materials", "steps", "fees", "time_limit", "legal_basis", "online_link"])
def test_missing_field_is_rejected_with_file_and_line(tmp_path, field):
    broken = {k: v for k, v in GOOD.items() if k != field}
    problems = _problems(tmp_path, [broken])
    assert any("t.yml:" in p and field in p and "passport.apply" in p for p in problems), problems


def test_duplicate_id_is_rejected(tmp_path):
    second = dict(GOOD, summary=GOOD["summary"] + "另一段说明。", questions=[q + "啊" for q in GOOD["questions"]])
    assert any("duplicate id" in p for p in _problems(tmp_path, [GOOD, second]))


def test_duplicate_question_across_entries_is_rejected(tmp_path):
    other = dict(GOOD, id="passport.other", summary=GOOD["summary"] + "不同。", related=[])
    problems = _problems(tmp_path, [GOOD, other])
    assert any("also belongs to passport.apply" in p for p in problems), problems


def test_question_differing_only_by_punctuation_counts_as_duplicate(tmp_path):
    entry = dict(GOOD, questions=[*GOOD["questions"], GOOD["questions"][0].rstrip("？") + " ?"])
    assert any("question repeated" in p for p in _problems(tmp_path, [entry]))


def test_unknown_related_id_is_rejected(tmp_path):
    entry = dict(GOOD, related=["passport.no_such_item"])
    assert any("unknown related/component id 'passport.no_such_item'" in p for p in _problems(tmp_path, [entry]))


def test_placeholder_text_is_rejected(tmp_path):
    entry = dict(GOOD, fees="待补充")
    assert any("placeholder" in p for p in _problems(tmp_path, [entry]))


def test_too_few_questions_is_rejected(tmp_path):
    entry = dict(GOOD, questions=GOOD["questions"][:3])
    assert any("questions" in p for p in _problems(tmp_path, [entry]))


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "broken.yml"
    path.write_text("entries:\n  - id: a.b\n    title: [unclosed\n", encoding="utf-8")
    _, problems = files.read_file(path)
    assert problems and str(problems[0]).startswith(f"{path}:")
    assert problems[0].line >= 3
