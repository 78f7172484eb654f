"""Reading and checking the YAML files of curated entries.

Errors name the file and line so a curator can fix them without reading a
traceback: `passport.yml:42: passport.renew: materials.0.form: ...`.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from knowledge_base.schema import Entry, normalise_question

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR = PACKAGE_DIR / "data"
COVERAGE_FILE = PACKAGE_DIR / "coverage.tsv"


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    entry_id: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}"
        return f"{where}: {self.entry_id}: {self.message}" if self.entry_id else f"{where}: {self.message}"


class KBValidationError(Exception):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class SourcedEntry:
    entry: Entry
    path: str
    line: int


# YAML folds a line break in a `>-` block into a space, which is wrong between Chinese characters.
_CJK = r"\u3000-\u303f\u4e00-\u9fff\uff00-\uffef"
_FOLDED_SPACE = re.compile(f"(?<=[{_CJK}])[ \t]+(?=[{_CJK}])")


def _unfold(value: Any) -> Any:
    if isinstance(value, str):
        return _FOLDED_SPACE.sub("", value)
    if isinstance(value, list):
        return [_unfold(v) for v in value]
    if isinstance(value, dict):
        return {k: _unfold(v) for k, v in value.items()}
    return value


def _node_line(node: yaml.Node, loc: tuple[Any, ...]) -> int:
    """Line (1-based) of the YAML node at a pydantic error location."""
    for key in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(key, str):
            match = next((v for k, v in node.value if k.value == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            match = node.value[key]
        else:
            match = None
        if match is None:
            break
        node = match
    return node.start_mark.line + 1


def read_file(path: Path) -> tuple[list[SourcedEntry], list[Problem]]:
    """Parse one YAML file of entries; return what validated and what did not."""
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
        root = yaml.compose(text)
    except UnicodeDecodeError as exc:
        return [], [Problem(shown, 1, "", f"not UTF-8 text ({exc.reason})")]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        return [], [Problem(shown, line, "", f"YAML syntax: {getattr(exc, 'problem', exc)}")]
    if root is None:
        return [], [Problem(shown, 1, "", "file is empty")]
    data = _unfold(yaml.safe_load(text))
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        return [], [Problem(shown, 1, "", "expected a mapping with an 'entries:' list")]
    entries_node = next(v for k, v in root.value if k.value == "entries")
    good: list[SourcedEntry] = []
    problems: list[Problem] = []
    for raw, node in zip(data["entries"], entries_node.value, strict=True):
        line = node.start_mark.line + 1
        entry_id = str(raw.get("id", "")) if isinstance(raw, dict) else ""
        try:
            good.append(SourcedEntry(Entry.model_validate(raw), shown, line))
        except ValidationError as exc:
            for err in exc.errors():
                loc = tuple(err["loc"])
                field = ".".join(str(p) for p in loc) or "entry"
                problems.append(Problem(shown, _node_line(node, loc), entry_id, f"{field}: {err['msg']}"))
    return good, problems


def coverage_ids(path: Path = COVERAGE_FILE) -> list[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [row["id"] for row in csv.DictReader(handle, delimiter="\t")]


def cross_check(
    entries: Iterable[SourcedEntry],
    required_ids: Iterable[str] | None = None,
    known_ids: Iterable[str] = (),
) -> list[Problem]:
    """Checks that need the whole KB: unique ids/questions/answers, links, coverage.

    `known_ids` are ids that exist elsewhere (used when checking a few files alone).
    """
    items = list(entries)
    problems: list[Problem] = []
    by_id: dict[str, SourcedEntry] = {}
    question_owner: dict[str, str] = {}
    summary_owner: dict[str, str] = {}
    for item in items:
        e = item.entry
        if e.id in by_id:
            first = by_id[e.id]
            problems.append(Problem(item.path, item.line, e.id, f"duplicate id (first at {first.path}:{first.line})"))
            continue
        by_id[e.id] = item
        for question in e.questions:
            key = normalise_question(question)
            owner = question_owner.setdefault(key, e.id)
            if owner != e.id:
                problems.append(Problem(item.path, item.line, e.id, f"question {question!r} also belongs to {owner}"))
        owner = summary_owner.setdefault(normalise_question(e.summary), e.id)
        if owner != e.id:
            problems.append(Problem(item.path, item.line, e.id, f"same summary as {owner}"))
    linkable = set(by_id) | set(known_ids)
    for item in by_id.values():
        e = item.entry
        scenario_items = [m.for_item for m in e.scenario.materials if m.for_item] if e.scenario else []
        for ref in [*e.related, *(c.id for c in e.components), *scenario_items]:
            if ref not in linkable:
                problems.append(Problem(item.path, item.line, e.id, f"unknown related/component id {ref!r}"))
    if required_ids is not None:
        for missing in [i for i in required_ids if i not in by_id]:
            problems.append(Problem(str(COVERAGE_FILE), 1, missing, "coverage id has no entry"))
    return problems


def load_directory(directory: Path = DATA_DIR, *, require_coverage: bool = True) -> list[Entry]:
    """Load and fully validate every `*.yml` file; raise with all problems at once."""
    sourced: list[SourcedEntry] = []
    problems: list[Problem] = []
    for path in sorted(directory.glob("*.yml")):
        good, bad = read_file(path)
        sourced.extend(good)
        problems.extend(bad)
    # A partial KB (a deployment still writing entries) may link to coverage ids it does not have yet.
    required = coverage_ids() if require_coverage else None
    problems.extend(cross_check(sourced, required, known_ids=() if require_coverage else coverage_ids()))
    if problems:
        raise KBValidationError(problems)
    return [s.entry for s in sourced]


def dump_entries(entries: Iterable[Entry]) -> str:
    """YAML text for entries, in the same shape the loader reads."""
    rows = [e.model_dump(mode="json", exclude_defaults=True) for e in entries]
    return yaml.safe_dump({"entries": rows}, allow_unicode=True, sort_keys=False, width=100)
