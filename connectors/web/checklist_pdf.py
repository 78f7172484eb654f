"""The checklist as a PDF (reportlab, via bot/pdf.py)."""

from __future__ import annotations

from typing import Any

from reportlab.lib.units import mm
from reportlab.platypus import Spacer

from bot.checklists import Checklist
from bot.pdf import BODY, HEADING, SMALL, TITLE, grid, paragraph
from bot.pdf import render as render_pdf


def render(checklist: Checklist) -> bytes:
    made = checklist.created_at.astimezone().strftime("%Y年%m月%d日")
    story: list[Any] = [
        paragraph(checklist.heading, TITLE),
        paragraph(
            f"生成日期：{made}　知识库版本：{checklist.kb_id} 第{checklist.kb_version}版　清单编号：{checklist.id}",
            SMALL,
        ),
        Spacer(1, 4 * mm),
    ]
    rows = [["序号", "材料名称", "形式", "份数", "说明"]]
    for n, item in enumerate(checklist.materials, 1):
        name = f"{item.name}\n（用于：{item.for_item}）" if item.for_item else item.name
        rows.append([str(n), name, item.form_label, str(item.count), item.note])
    story.append(grid(rows, [10, 52, 26, 12, 78]))
    if checklist.notes:
        story.append(paragraph("温馨提示", HEADING))
        story += [paragraph(f"· {note}") for note in checklist.notes]
    story.append(paragraph("办理信息", HEADING))
    for label, value in (
        ("办理地点", checklist.where),
        ("办理时限", checklist.time_limit),
        ("收费", checklist.fees),
        ("网上办理", checklist.online_link),
        ("办理依据", "、".join(checklist.legal_basis)),
    ):
        story.append(paragraph(f"{label}：{value}"))
    samples = [item for item in checklist.materials if item.sample_fields]
    if samples:
        story.append(paragraph("表格填写样例", HEADING))
        for item in samples:
            story.append(paragraph(f"【{item.name}】", BODY))
            story += [paragraph(f"　{f.label}：{f.example}", SMALL) for f in item.sample_fields]
    story += [
        Spacer(1, 4 * mm),
        paragraph("本清单按您选择的情形生成，各地要求可能不同，以受理窗口和当地公告为准。", SMALL),
    ]
    return render_pdf(checklist.heading, story)
