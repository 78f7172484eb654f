"""Editing the knowledge base from the console: validated like a YAML import, saved as a new version,
audited, and in effect at once.

Every save goes through `KBStore.save` (author = the console account, with the curator's note), so
`kb_entry_versions` keeps who changed what and why. After the save this worker rebuilds its retrieval
index immediately (only new texts are embedded); other workers see the new KB revision within their
2-second check. Problems come back as a list of {field, line, message}, in Chinese where they are
ours and with pydantic's message otherwise.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.audit import AuditLog
from console.accounts import Account
from knowledge_base.files import SourcedEntry, cross_check
from knowledge_base.retrieval import Retriever
from knowledge_base.schema import MIN_QUESTIONS, Entry, normalise_question
from knowledge_base.store import EntryRow, KBStore

DRAFT_MARK = "待补充"  # the schema refuses it (a placeholder), so a draft cannot be saved unfinished


@dataclass(frozen=True)
class Problem:
    field: str
    message: str
    line: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"field": self.field, "message": self.message, "line": self.line}


class EditError(Exception):
    def __init__(self, status: int, code: str, message: str, problems: list[Problem] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.problems = status, code, message, problems or []


def entry_yaml(entry: Entry) -> str:
    """One entry as the YAML a curator edits (the mapping only, without the file's `entries:` list)."""
    data = entry.model_dump(mode="json", exclude_defaults=True)
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=100)


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    node = root
    if node is None:
        return None
    for key in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(key, str):
            found = next((v for k, v in node.value if k.value == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            found = node.value[key]
        else:
            found = None
        if found is None:
            break
        node = found
    return node.start_mark.line + 1


def parse_yaml(text: str) -> tuple[Any, yaml.Node | None]:
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = Problem(
            "yaml", f"YAML 语法错误：{getattr(exc, 'problem', None) or exc}", mark.line + 1 if mark else 1
        )
        raise EditError(422, "invalid_entry", "YAML 格式有误。", [problem]) from None
    if isinstance(data, dict) and list(data) == ["entries"] and isinstance(data["entries"], list):
        if len(data["entries"]) != 1:
            raise EditError(422, "invalid_entry", "一次只能保存一个事项。", [Problem("entries", "请只保留一个事项")])
        data = data["entries"][0]
        root = root.value[0][1].value[0] if isinstance(root, yaml.MappingNode) else None
    return data, root


def validate(data: Any, root: yaml.Node | None = None) -> Entry:
    if not isinstance(data, dict):
        raise EditError(422, "invalid_entry", "事项内容应为键值映射。", [Problem("entry", "应为一个事项的字段映射")])
    try:
        return Entry.model_validate(data)
    except ValidationError as exc:
        problems = [
            Problem(".".join(str(p) for p in err["loc"]) or "entry", err["msg"], _line_of(root, tuple(err["loc"])))
            for err in exc.errors()
        ]
        raise EditError(422, "invalid_entry", f"事项未通过校验（{len(problems)}处问题）。", problems) from None


class KBEditor:
    def __init__(self, store: KBStore, retriever: Retriever, audit: AuditLog):
        self.store, self.retriever, self.audit = store, retriever, audit

    # Reading -------------------------------------------------------------------------------------------

    def search(self, query: str = "", limit: int = 200) -> list[dict[str, Any]]:
        needle = normalise_question(query)
        versions = self._versions()
        out = []
        for entry in self.store.all():
            haystack = normalise_question(" ".join([entry.id, entry.title, entry.department, *entry.questions]))
            if needle and needle not in haystack:
                continue
            version, updated_at, updated_by = versions.get(entry.id, (0, None, ""))
            out.append(
                {
                    "id": entry.id,
                    "title": entry.title,
                    "department": entry.department,
                    "theme": entry.theme,
                    "questions": len(entry.questions),
                    "version": version,
                    "updated_at": updated_at,
                    "updated_by": updated_by,
                }
            )
        return out[:limit]

    def detail(self, entry_id: str) -> dict[str, Any]:
        entry = self.store.get(entry_id)
        if entry is None:
            raise EditError(404, "unknown_entry", "没有这个事项。")
        return {
            "id": entry.id,
            "version": self.store.version(entry.id),
            "entry": entry.model_dump(mode="json"),
            "yaml": entry_yaml(entry),
        }

    def history(self, entry_id: str) -> list[dict[str, Any]]:
        versions = self.store.history(entry_id)
        if not versions:
            raise EditError(404, "unknown_entry", "没有这个事项。")
        return [
            {
                "version": v.version,
                "created_at": _iso(v.created_at),
                "created_by": v.created_by,
                "note": v.note,
                "questions": len(v.entry.questions),
            }
            for v in reversed(versions)
        ]

    def version_yaml(self, entry_id: str, version: int) -> dict[str, Any]:
        found = next((v for v in self.store.history(entry_id) if v.version == version), None)
        if found is None:
            raise EditError(404, "unknown_version", "没有这个版本。")
        return {
            "id": entry_id,
            "version": found.version,
            "created_at": _iso(found.created_at),
            "created_by": found.created_by,
            "note": found.note,
            "yaml": entry_yaml(found.entry),
        }

    # Writing -------------------------------------------------------------------------------------------

    def save(
        self,
        account: Account,
        entry: Entry,
        note: str,
        *,
        create: bool,
        base_version: int | None = None,
        client: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Save `entry` as a new version (or a new entry), after the whole-KB checks; audited as "edit"."""
        note = note.strip()
        if not note:
            raise EditError(422, "note_required", "请填写修改说明。", [Problem("note", "请说明为什么修改")])
        current = self.store.version(entry.id)
        if create and current:
            raise EditError(409, "entry_exists", f"事项编号 {entry.id} 已存在，请换一个编号或编辑现有事项。")
        if not create and not current:
            raise EditError(404, "unknown_entry", "没有这个事项。")
        if base_version is not None and base_version != current:
            raise EditError(409, "version_conflict", f"该事项已被他人修改（当前为第{current}版），请重新载入后再改。")
        self._check_against_kb(entry)
        result = self.store.save([entry], author=account.username, note=note)
        version = self.store.version(entry.id)
        changed = bool(result.created or result.updated)
        if changed:
            self.audit.record(
                account.username,
                "edit",
                f"kb:{entry.id}",
                role=account.role,
                detail={"version": version, "created": bool(result.created), "note": note, **(detail or {})},
                client=client,
            )
            self.retriever.rebuild()  # in effect in this worker now; the others follow the KB revision
        return {"id": entry.id, "version": version, "changed": changed, "created": bool(result.created)}

    def add_question(
        self, account: Account, entry_id: str, question: str, note: str, client: str | None = None
    ) -> dict[str, Any]:
        entry = self.store.get(entry_id)
        if entry is None:
            raise EditError(404, "unknown_entry", "没有这个事项。")
        question = " ".join(question.split())
        if not normalise_question(question):
            raise EditError(422, "empty_question", "问题不能为空。")
        if any(normalise_question(q) == normalise_question(question) for q in entry.questions):
            raise EditError(409, "question_exists", "这个事项已经有这个问法了。")
        data = entry.model_dump(mode="json")
        data["questions"] = [*entry.questions, question]
        updated = validate(data)
        return self.save(
            account,
            updated,
            note or f"补充问法：{question}",
            create=False,
            client=client,
            detail={"added_question": question},
        )

    def draft(self, questions: list[str], like: str | None = None) -> dict[str, Any]:
        """A new entry's YAML to complete in the editor: the cluster's questions, the department and theme of
        the item the bot guessed, and 待补充 wherever a curator must write (it cannot be saved until done)."""
        base = self.store.get(like) if like else None
        distinct: list[str] = []
        for q in questions:
            q = " ".join(q.split())
            if normalise_question(q) and all(normalise_question(q) != normalise_question(d) for d in distinct):
                distinct.append(q)
        distinct = distinct[:20]
        while len(distinct) < MIN_QUESTIONS:
            distinct.append(f"{DRAFT_MARK}：另一种问法{len(distinct) + 1}")
        theme = base.id.split(".")[0] if base and not base.id.startswith("onething.") else "service"
        data: dict[str, Any] = {
            "id": f"{theme}.new_item",
            "title": DRAFT_MARK,
            "department": base.department if base else DRAFT_MARK,
            "theme": base.theme if base else DRAFT_MARK,
            "audience": base.audience if base else "citizen",
            "summary": f"{DRAFT_MARK}：用一两句话说明这个事项是什么、谁可以办、在哪里办。",
            "conditions": [f"{DRAFT_MARK}：申请条件"],
            "materials": [{"name": f"{DRAFT_MARK}：材料名称", "form": "original", "count": 1}],
            "steps": {"online": [f"{DRAFT_MARK}：网上办理步骤"], "window": [f"{DRAFT_MARK}：窗口办理步骤"]},
            "where": base.where if base else f"{DRAFT_MARK}：办理地点",
            "hours": base.hours if base else f"{DRAFT_MARK}：办公时间",
            "fees": f"{DRAFT_MARK}：收费标准",
            "time_limit": f"{DRAFT_MARK}：办结时限",
            "online_link": base.online_link if base else "https://",
            "legal_basis": [f"{DRAFT_MARK}：法律依据"],
            "related": [base.id] if base else [],
            "local_note": f"{DRAFT_MARK}：各地规定可能不同，请以当地要求为准。",
            "last_reviewed": dt.date.today().isoformat(),
            "questions": distinct,
        }
        return {"yaml": yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=100), "like": like}

    # ---------------------------------------------------------------------------------------------------

    def _check_against_kb(self, entry: Entry) -> None:
        others = [e for e in self.store.all() if e.id != entry.id]
        sourced = [SourcedEntry(e, "kb", 0) for e in others] + [SourcedEntry(entry, "edit", 0)]
        problems = [p for p in cross_check(sourced) if p.entry_id == entry.id and p.path == "edit"]
        if problems:
            raise EditError(
                422,
                "invalid_entry",
                f"与知识库中其他事项冲突（{len(problems)}处问题）。",
                [Problem("entry", _chinese(p.message)) for p in problems],
            )

    def _versions(self) -> dict[str, tuple[int, str | None, str]]:
        with Session(self.store.engine) as session:
            rows = session.execute(select(EntryRow.id, EntryRow.version, EntryRow.updated_at, EntryRow.updated_by))
            return {i: (v, _iso(at), by) for i, v, at, by in rows}


_CONFLICTS = (
    (re.compile(r"^question (.+) also belongs to (\S+)$"), "问法 {0} 已属于事项 {1}，同一问法只能属于一个事项"),
    (re.compile(r"^same summary as (\S+)$"), "摘要与事项 {0} 相同"),
    (re.compile(r"^unknown related/component id (.+)$"), "关联事项 {0} 不存在"),
)


def _chinese(message: str) -> str:
    for pattern, text in _CONFLICTS:
        match = pattern.match(message)
        if match:
            return text.format(*match.groups())
    return message


def _iso(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).isoformat()
