"""Chinese PDF building blocks (reportlab) for checklists and transcript exports.

Text uses the Adobe-GB1 CID font STSong-Light, which PDF readers supply
themselves, so no font file ships with the product.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Table, TableStyle

FONT = "STSong-Light"
pdfmetrics.registerFont(UnicodeCIDFont(FONT))
BODY = ParagraphStyle("body", fontName=FONT, fontSize=10, leading=15, wordWrap="CJK")
SMALL = ParagraphStyle("small", parent=BODY, fontSize=8.5, leading=12, textColor=colors.HexColor("#555555"))
TITLE = ParagraphStyle("title", parent=BODY, fontSize=15, leading=21, spaceAfter=4)
HEADING = ParagraphStyle("heading", parent=BODY, fontSize=11.5, leading=17, spaceBefore=8, spaceAfter=3)


def paragraph(text: str, style: ParagraphStyle = BODY) -> Paragraph:
    return Paragraph(escape(text).replace("\n", "<br/>"), style)


def grid(rows: list[list[str]], widths_mm: Sequence[float]) -> Table:
    """A ruled table whose first row is the (repeated) header."""
    table = Table(
        [[paragraph(cell) for cell in row] for row in rows], colWidths=[w * mm for w in widths_mm], repeatRows=1
    )
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.5, colors.HexColor("#999999")),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8eef7")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    return table


def render(title: str, story: list[Any], margin_mm: float = 16) -> bytes:
    """An A4 document of `story` (paragraphs, spacers, tables), as bytes."""
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=margin_mm * mm,
        rightMargin=margin_mm * mm,
        topMargin=14 * mm,
        bottomMargin=14 * mm,
        title=title,
        author="智询政务服务助手",
    )
    doc.build(story)
    return buffer.getvalue()
