"""The score report as a PDF, in Chinese or English (issue #5, item 6).

reportlab with Adobe's CID font `STSong-Light` for Chinese: PDF readers carry it (it is
one of the fonts every Chinese-capable reader must supply), so no font file ships or is
embedded, and the PDF's text stays extractable. Latin-only text uses Helvetica.

One table per dimension: score, confidence, the components that made it, the evidence
quotes with their times, the rubric lines with the band each supports, and notes; then
the face note (never part of a score), the model versions and the advisory notice.
Optionally the candidate's explanation page (PIPL Art. 24) is appended.
"""

from __future__ import annotations

import io
import re
from typing import Any, Literal
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import (
    Flowable,
    KeepTogether,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from workers.analysis.scoring import ADVISORY_NOTE, COMPONENT_LABELS, explanation

CJK_FONT = "STSong-Light"
LATIN_FONT = "Helvetica"
_CJK = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef\u3000-\u303f“”]")

LABELS: dict[str, dict[str, str]] = {
    "zh": {
        "title": "面试评估报告（AI建议）",
        "candidate": "候选人",
        "job": "岗位",
        "overall": "总分",
        "overall_confidence": "总体置信度",
        "summary": "概要",
        "score": "分数",
        "confidence": "置信度",
        "weight": "权重",
        "components": "组成",
        "evidence": "证据（转写原文与时间）",
        "rubric": "评分标准",
        "notes": "说明",
        "band": "档",
        "similarity": "相似度",
        "supports": "支持",
        "answer": "回答",
        "not_scored": "未评分",
        "face": "人脸信号（不计入分数）",
        "face_body": "仅用于判断作答者是否在画面中、是否为同一人；"
        "只影响置信度和说明，从不影响分数。",
        "models": "模型版本",
        "advisory": "重要提示",
        "none": "无",
    },
    "en": {
        "title": "Interview assessment (AI advisory)",
        "candidate": "Candidate",
        "job": "Job",
        "overall": "Overall",
        "overall_confidence": "Overall confidence",
        "summary": "Summary",
        "score": "Score",
        "confidence": "Confidence",
        "weight": "Weight",
        "components": "Components",
        "evidence": "Evidence (transcript quotes and times)",
        "rubric": "Rubric",
        "notes": "Notes",
        "band": "band",
        "similarity": "similarity",
        "supports": "supports",
        "answer": "answer",
        "not_scored": "not scored",
        "face": "Face signals (not part of any score)",
        "face_body": "Used only to tell whether the person answering was on camera and the "
        "same throughout; they change confidence and notes, never a score.",
        "models": "Model versions",
        "advisory": "Important",
        "none": "none",
    },
}

_registered = False


def _fonts() -> None:
    global _registered
    if not _registered:
        pdfmetrics.registerFont(UnicodeCIDFont(CJK_FONT))
        _registered = True


def _style(name: str, size: float, bold: bool = False) -> dict[str, ParagraphStyle]:
    """A CJK and a Latin variant of one style: the font and line breaking follow the text."""
    common = {"fontSize": size, "leading": size * 1.35, "spaceAfter": 2}
    return {
        "cjk": ParagraphStyle(f"{name}-cjk", fontName=CJK_FONT, wordWrap="CJK", **common),
        "latin": ParagraphStyle(
            f"{name}-latin", fontName="Helvetica-Bold" if bold else LATIN_FONT, **common
        ),
    }


class _Styles:
    def __init__(self) -> None:
        self.title = _style("title", 16, bold=True)
        self.heading = _style("heading", 12, bold=True)
        self.body = _style("body", 9)
        self.small = _style("small", 8)

    @staticmethod
    def para(text: str, style: dict[str, ParagraphStyle]) -> Paragraph:
        chosen = style["cjk"] if _CJK.search(text) else style["latin"]
        return Paragraph(escape(text).replace("\n", "<br/>"), chosen)


def render_pdf(
    report: dict[str, Any],
    lang: Literal["zh", "en"],
    candidate_label: str,
    job_title: str,
    with_explanation: bool = False,
) -> bytes:
    """The report of `scoring.score_report` as PDF bytes, made in memory (no temp files).

    `candidate_label` is what HR sees for the candidate (a reference or a name; the
    caller decides what the reader may see). `with_explanation` appends the candidate's
    explanation page (PIPL Art. 24).
    """
    _fonts()
    lang = "zh" if lang == "zh" else "en"
    t, s = LABELS[lang], _Styles()
    story: list[Flowable] = [
        s.para(t["title"], s.title),
        s.para(f"{t['candidate']}: {candidate_label}    {t['job']}: {job_title}", s.body),
        Spacer(1, 3 * mm),
        _notice(ADVISORY_NOTE[lang], t, s),
        Spacer(1, 3 * mm),
        *_overview(report, t, s),
    ]
    for dim in report["dimensions"]:
        story += [Spacer(1, 4 * mm), *_dimension(dim, t, s, lang)]
    if report.get("face"):
        story += [Spacer(1, 4 * mm), *_face(report["face"], t, s)]
    story += [Spacer(1, 4 * mm), *_versions(report.get("model_versions", {}), t, s)]
    if with_explanation:
        story.append(PageBreak())
        story += [
            s.para(line, s.body) if line.strip() else Spacer(1, 2 * mm)
            for line in explanation(report, lang).splitlines()
        ]
    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=15 * mm,
        bottomMargin=15 * mm,
        title=t["title"],
        author="Enclave HR",
    )
    doc.build(story)
    return buf.getvalue()


def _grid(rows: list[list[Flowable]], widths: list[float]) -> Table:
    table = Table(rows, colWidths=widths)
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("BACKGROUND", (0, 0), (0, -1), colors.whitesmoke),
            ]
        )
    )
    return table


def _notice(text: str, t: dict[str, str], s: _Styles) -> Table:
    table = Table([[s.para(f"{t['advisory']}: {text}", s.body)]], colWidths=[180 * mm])
    table.setStyle(
        TableStyle(
            [
                ("BOX", (0, 0), (-1, -1), 1, colors.darkred),
                ("BACKGROUND", (0, 0), (-1, -1), colors.Color(1, 0.95, 0.95)),
            ]
        )
    )
    return table


def _overview(report: dict[str, Any], t: dict[str, str], s: _Styles) -> list[Flowable]:
    overall = report.get("overall")
    rows = [
        [s.para(t["summary"], s.body), s.para(report.get("summary", ""), s.body)],
        [
            s.para(t["overall"], s.body),
            s.para(t["not_scored"] if overall is None else f"{overall:.1f} / 10", s.body),
        ],
        [
            s.para(t["overall_confidence"], s.body),
            s.para(f"{report.get('overall_confidence', 0.0):.2f}", s.body),
        ],
    ]
    return [_grid(rows, [40 * mm, 140 * mm])]


def _dimension(dim: dict[str, Any], t: dict[str, str], s: _Styles, lang: str) -> list[Flowable]:
    score = t["not_scored"] if dim["score"] is None else f"{dim['score']:.1f} / 10"
    head = s.para(f"{dim['name']}: {score}", s.heading)
    rows = [
        [s.para(t["score"], s.body), s.para(score, s.body)],
        [s.para(t["confidence"], s.body), s.para(f"{dim['confidence']:.2f}", s.body)],
        [
            s.para(t["weight"], s.body),
            s.para(f"{dim['weight']} ({dim.get('weight_share', 0):.0%})", s.body),
        ],
        [s.para(t["components"], s.body), _lines(_components(dim, lang, t), s)],
        [s.para(t["evidence"], s.body), _lines(_evidence(dim, t), s)],
        [s.para(t["rubric"], s.body), _lines(_rubric(dim, t), s)],
    ]
    notes = [n.get(lang, n.get("en", "")) for n in dim.get("notes", [])]
    if notes:
        rows.append([s.para(t["notes"], s.body), _lines(notes, s)])
    return [KeepTogether([head, _grid(rows, [40 * mm, 140 * mm])])]


def _lines(texts: list[str], s: _Styles) -> list[Flowable]:
    return [s.para(text, s.small) for text in texts] or [s.para("-", s.small)]


def _components(dim: dict[str, Any], lang: str, t: dict[str, str]) -> list[str]:
    out = []
    for c in dim.get("components", []):
        label = COMPONENT_LABELS.get(c["name"], {}).get(lang, c["name"])
        inputs = ", ".join(f"{k}={v}" for k, v in c.get("inputs", {}).items())
        out.append(f"{label}: {c['value']:.2f} ({t['weight']} {c['weight']}; {inputs})")
    return out


def _evidence(dim: dict[str, Any], t: dict[str, str]) -> list[str]:
    return [
        f"“{e['quote']}” ({t['answer']} {e['answer_id']}, {e['start']:.1f}-{e['end']:.1f} s)"
        f" — {e['reason']}"
        for e in dim.get("evidence", [])
    ]


def _rubric(dim: dict[str, Any], t: dict[str, str]) -> list[str]:
    out = []
    for line in dim.get("rubric", {}).get("lines", []):
        sim = line.get("similarity")
        mark = f" [{t['supports']}]" if line.get("supports") else ""
        detail = "" if sim is None else f", {t['similarity']} {sim:.2f}"
        out.append(f"{line['score']} {t['band']}{detail}{mark}: {line['text']}")
    return out


def _face(face: dict[str, Any], t: dict[str, str], s: _Styles) -> list[Flowable]:
    rows = [[s.para(t["face"], s.body), s.para(t["face_body"], s.small)]]
    for answer_id, values in face.get("answers", {}).items():
        text = ", ".join(f"{k}={v}" for k, v in values.items())
        rows.append([s.para(f"{t['answer']} {answer_id}", s.body), s.para(text, s.small)])
    for doubt in face.get("doubts", {}).values():
        rows.append([s.para(t["notes"], s.body), s.para(doubt, s.small)])
    return [_grid(rows, [40 * mm, 140 * mm])]


def _versions(versions: dict[str, str], t: dict[str, str], s: _Styles) -> list[Flowable]:
    rows = [[s.para(k, s.body), s.para(str(v), s.small)] for k, v in versions.items()]
    return [
        s.para(t["models"], s.heading),
        _grid(rows or [[s.para(t["none"], s.body)]], [40 * mm, 140 * mm]),
    ]
