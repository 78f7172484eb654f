"""The checklist as a PDF (reportlab). Chinese text uses the Adobe-GB1 CID font STSong-Light,
which PDF readers supply themselves, so no font file ships with the product."""

from __future__ import annotations

import io
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from bot.checklists import Checklist

FONT = "STSong-Light"
pdfmetrics.registerFont(UnicodeCIDFont(FONT))
_BODY = ParagraphStyle("body", fontName=FONT, fontSize=10, leading=15, wordWrap="CJK")
_SMALL = ParagraphStyle("small", parent=_BODY, fontSize=8.5, leading=12, textColor=colors.HexColor("#555555"))
_TITLE = ParagraphStyle("title", parent=_BODY, fontSize=15, leading=21, spaceAfter=4)
_HEADING = ParagraphStyle("heading", parent=_BODY, fontSize=11.5, leading=17, spaceBefore=8, spaceAfter=3)


def _p(text: str, style: ParagraphStyle = _BODY) -> Paragraph:
    return Paragraph(escape(text).replace("\n", "<br/>"), style)


def render(checklist: Checklist) -> bytes:
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=16 * mm,
        rightMargin=16 * mm,
        topMargin=14 * mm,
        bottomMargin=14 * mm,
        title=checklist.heading,
        author="智询政务服务助手",
    )
    made = checklist.created_at.astimezone().strftime("%Y年%m月%d日")
    story = [
        _p(checklist.heading, _TITLE),
        _p(
            f"生成日期：{made}　知识库版本：{checklist.kb_id} 第{checklist.kb_version}版　清单编号：{checklist.id}",
            _SMALL,
        ),
        Spacer(1, 4 * mm),
    ]
    rows = [[_p("序号"), _p("材料名称"), _p("形式"), _p("份数"), _p("说明")]]
    for n, item in enumerate(checklist.materials, 1):
        name = f"{item.name}\n（用于：{item.for_item}）" if item.for_item else item.name
        rows.append([_p(str(n)), _p(name), _p(item.form_label), _p(str(item.count)), _p(item.note)])
    table = Table(rows, colWidths=[10 * mm, 52 * mm, 26 * mm, 12 * mm, 78 * mm], repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.5, colors.HexColor("#999999")),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8eef7")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    story.append(table)
    if checklist.notes:
        story.append(_p("温馨提示", _HEADING))
        story += [_p(f"· {note}") for note in checklist.notes]
    story.append(_p("办理信息", _HEADING))
    for label, value in (
        ("办理地点", checklist.where),
        ("办理时限", checklist.time_limit),
        ("收费", checklist.fees),
        ("网上办理", checklist.online_link),
        ("办理依据", "、".join(checklist.legal_basis)),
    ):
        story.append(_p(f"{label}：{value}"))
    samples = [item for item in checklist.materials if item.sample_fields]
    if samples:
        story.append(_p("表格填写样例", _HEADING))
        for item in samples:
            story.append(_p(f"【{item.name}】", _BODY))
            story += [_p(f"　{f.label}：{f.example}", _SMALL) for f in item.sample_fields]
    story += [Spacer(1, 4 * mm), _p("本清单按您选择的情形生成，各地要求可能不同，以受理窗口和当地公告为准。", _SMALL)]
    doc.build(story)
    return buffer.getvalue()
