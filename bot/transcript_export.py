"""One conversation as JSON, a printable HTML page or a PDF, with its integrity check.

Masked by default: ID and phone numbers in the lines are masked and the sender (client
address or channel account) is hidden. The PDF uses the Adobe-GB1 CID font STSong-Light,
which PDF readers supply, as the checklist PDF does.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from reportlab.lib.units import mm
from reportlab.platypus import Spacer

from bot.pdf import SMALL, TITLE, grid, paragraph
from bot.pdf import render as render_pdf
from bot.transcripts import ChainReport, Conversation, TranscriptLine, TranscriptStore

ROLE_LABELS = {"citizen": "市民", "bot": "智能助手", "agent": "坐席", "system": "系统"}
PROBLEM_LABELS = {
    "edited": "内容与校验值不符（记录被修改）",
    "deleted": "记录缺失（被删除）",
    "broken_link": "与上一条记录的链接不符（上一条被修改）",
    "unchained": "缺少校验值",
    "tail": "会话末条记录与会话登记不符",
}
_templates = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"), autoescape=select_autoescape(["html"])
)


@dataclass(frozen=True)
class ConversationExport:
    conversation: Conversation
    lines: list[TranscriptLine]
    report: ChainReport
    masked: bool
    exported_at: dt.datetime

    @property
    def sender(self) -> str:
        return "***" if self.masked and self.conversation.sender else self.conversation.sender

    def status(self) -> list[str]:
        """The integrity check in words, for people."""
        report = self.report
        if not report.ok:
            head = f"完整性校验：未通过，发现{len(report.problems)}处问题。"
            return [head, *(f"第{p.seq}条：{PROBLEM_LABELS[p.kind]}" for p in report.problems)]
        text = f"完整性校验：通过（共{report.lines}条记录，哈希链完整）。"
        if report.legacy_lines:
            text += f"其中前{report.legacy_lines}条为启用校验前的记录，无法校验。"
        return [text]

    def notice(self) -> str:
        if self.masked:
            return "本记录已对身份证号、手机号和固定电话做脱敏处理。"
        return "本记录未脱敏，含个人信息，请妥善保管，仅用于依法依规的用途。"


def collect(store: TranscriptStore, conversation_id: str, *, mask: bool = True) -> ConversationExport:
    """Everything an export shows; KeyError if there is no such conversation."""
    conversation = store.conversation(conversation_id)
    if conversation is None:
        raise KeyError(conversation_id)
    lines = store.lines(conversation_id)
    return ConversationExport(
        conversation,
        [line.masked() for line in lines] if mask else lines,
        store.verify(conversation_id),
        mask,
        dt.datetime.now(dt.UTC),
    )


def _local(moment: dt.datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def as_json(export: ConversationExport) -> dict[str, Any]:
    c, report = export.conversation, export.report
    return {
        "conversation": {
            "id": c.id,
            "channel": c.channel,
            "sender": export.sender,
            "created_at": c.created_at.isoformat(),
            "last_active_at": c.last_active_at.isoformat(),
            "last_seq": c.last_seq,
            "last_hash": c.last_hash,
        },
        "exported_at": export.exported_at.isoformat(),
        "masked": export.masked,
        "verification": {
            "ok": report.ok,
            "lines": report.lines,
            "legacy_lines": report.legacy_lines,
            "problems": [{"seq": p.seq, "kind": p.kind, "detail": p.detail} for p in report.problems],
        },
        "lines": [line.to_json() for line in export.lines],
    }


def as_html(export: ConversationExport) -> str:
    return _templates.get_template("transcript.html").render(
        e=export,
        c=export.conversation,
        roles=ROLE_LABELS,
        local=_local,
        zone=export.exported_at.astimezone().strftime("UTC%z"),
    )


def as_pdf(export: ConversationExport) -> bytes:
    c = export.conversation
    zone = export.exported_at.astimezone().strftime("UTC%z")
    story: list[Any] = [
        paragraph("会话记录", TITLE),
        paragraph(f"会话编号：{c.id}　渠道：{c.channel}　访问者：{export.sender or '—'}", SMALL),
        paragraph(f"开始时间：{_local(c.created_at)}　最后活动：{_local(c.last_active_at)}　时区：{zone}", SMALL),
        paragraph(f"导出时间：{_local(export.exported_at)}　{export.notice()}", SMALL),
        *(paragraph(line, SMALL) for line in export.status()),
        Spacer(1, 4 * mm),
    ]
    rows = [["序号", "时间", "角色", "内容"]]
    for line in export.lines:
        text = f"{line.text}\n（事项：{line.kb_id}）" if line.kb_id else line.text
        rows.append([str(line.seq), _local(line.created_at), ROLE_LABELS.get(line.role, line.role), text])
    story.append(grid(rows, [11, 33, 18, 120]))
    return render_pdf(f"会话记录 {c.id}", story, margin_mm=14)
