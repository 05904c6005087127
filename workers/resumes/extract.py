"""Bytes in, lines of cells out: PDF (text or scanned), DOCX, images, plain text.

Everything is read from memory: no resume text or image is written to disk
(ARCHITECTURE.md: no personal data in temp files). The file's kind comes from
its content, never from its name, so a Windows executable named `.pdf` is
refused as what it is.

The output is a list of `Line`s, each a list of cells: the pieces of text a
reader sees as separate on a row (table cells, text runs spaced apart, the
columns of a `dates  employer  title` line). Layout is rebuilt from positions
for PDFs and OCR alike (`lines_from_boxes`): side-bar columns are split at
their gutter, wrapped table cells and wrapped lines are joined again.

PDF JavaScript: pypdfium2's PDFium is built without V8/XFA and no form
environment is opened here, so /OpenAction, /AA and /Names JavaScript are
never run; pypdf is not used for text.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from typing import Any

from workers.resumes.errors import ResumeRejected
from workers.resumes.limits import DEFAULT_LIMITS, Limits

Line = list[str]

CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_SPLIT_CELLS = re.compile(r"\t+|\u3000+| {2,}|\s+\|\s+")
_BULLET = re.compile(r"^\s*(?:[•·●▪◦■□*–]|-\s|\d{1,2}[、)]|\d{1,2}\.\s)")


@dataclass
class Box:
    """A piece of text at a place on a page (top-left origin, any unit)."""

    x0: float
    y0: float
    x1: float
    y1: float
    text: str
    last_h: float = 0.0  # height and end of the last line, once wrapped lines were joined in
    last_x1: float = 0.0

    @property
    def h(self) -> float:
        return max(self.y1 - self.y0, 1e-6)

    @property
    def line_h(self) -> float:
        return self.last_h or self.h


# ---------------------------------------------------------------- sniffing


def sniff(data: bytes) -> str:
    """The file's kind from its first bytes: pdf, docx, image, text, or a ResumeRejected."""
    head = data[:2048]
    if not data:
        raise ResumeRejected("empty file (0 bytes)")
    if b"%PDF-" in head[:1024]:
        return "pdf"
    if head.startswith(b"PK\x03\x04"):
        return "docx"
    if head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"MM\x00*")):
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image"
    if head.startswith(b"MZ"):
        raise ResumeRejected("content is a Windows executable (MZ/PE header), not a resume")
    if head.startswith(b"\x7fELF"):
        raise ResumeRejected("content is an ELF executable, not a resume")
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise ResumeRejected("legacy Word .doc (OLE) is not supported: save it as .docx or PDF")
    if head.startswith((b"Rar!", b"7z\xbc\xaf", b"\x1f\x8b")):
        raise ResumeRejected("content is an archive, not a resume")
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ResumeRejected("content is binary data of an unknown kind, not a resume")
    return "text"


def extract_lines(
    data: bytes, filename: str = "", limits: Limits = DEFAULT_LIMITS, ocr: Any = None
) -> tuple[str, list[Line]]:
    """(format, lines) for one file; `ocr` is a loaded engine (see `ocr.py`) or None."""
    if len(data) > limits.max_bytes:
        raise ResumeRejected(f"file too large: {len(data)} bytes, limit {limits.max_bytes} bytes")
    kind = sniff(data)
    if kind == "pdf":
        return _pdf_lines(data, limits, ocr)
    if kind == "docx":
        return "docx", docx_lines(data, limits)
    if kind == "image":
        return "scan_jpg", _image_lines(data, limits, ocr)
    return "txt", text_lines(decode_text(data))


# ---------------------------------------------------------------- plain text


def decode_text(data: bytes) -> str:
    """UTF-8 (with or without BOM) first, then what charset-normalizer finds (GBK, Big5...)."""
    for encoding in (
        ("utf-8-sig", "utf-16") if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ("utf-8-sig",)
    ):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is not None:
        return str(best)
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError:
        raise ResumeRejected("text in an unknown encoding (not UTF-8, GBK or another)") from None


def split_cells(text: str) -> Line:
    return [c.strip() for c in _SPLIT_CELLS.split(text) if c.strip()]


def text_lines(text: str) -> list[Line]:
    lines = []
    for raw in text.splitlines():
        cells = split_cells(raw.replace("\u00a0", " "))
        if cells:
            lines.append(cells)
    return lines


# ---------------------------------------------------------------- DOCX


def check_zip(data: bytes, limits: Limits) -> zipfile.ZipFile:
    """Open a DOCX zip after checking its declared sizes: a bomb is refused before inflating."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ResumeRejected(f"damaged DOCX (not a readable zip): {exc}") from None
    if len(infos) > limits.max_docx_entries:
        raise ResumeRejected(f"DOCX has {len(infos)} parts, limit {limits.max_docx_entries}")
    total = sum(info.file_size for info in infos)
    if total > limits.max_docx_uncompressed:
        raise ResumeRejected(
            f"DOCX inflates to {total} bytes, limit {limits.max_docx_uncompressed} "
            "(decompression bomb?)"
        )
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > 1024 * 1024 and ratio > limits.max_docx_ratio:
            raise ResumeRejected(
                f"DOCX part compresses {ratio:.0f}:1, limit {limits.max_docx_ratio:.0f}:1 "
                "(decompression bomb?)"
            )
    if "word/document.xml" not in archive.namelist():
        raise ResumeRejected("zip file is not a Word document (no word/document.xml)")
    return archive


def _dedupe(cells: list[str]) -> list[str]:
    out: list[str] = []
    for cell in cells:
        if cell and (not out or out[-1] != cell):
            out.append(cell)
    return out


def docx_lines(data: bytes, limits: Limits = DEFAULT_LIMITS) -> list[Line]:
    """Paragraphs and tables in document order; a table used as columns reads column by column."""
    check_zip(data, limits)
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises many kinds on damaged parts
        raise ResumeRejected(f"damaged DOCX: {type(exc).__name__}") from None
    lines: list[Line] = []
    body = document.element.body
    for child in body.iterchildren():
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            lines.extend(text_lines(Paragraph(child, document).text))
        elif tag == "tbl":
            table = Table(child, document)
            for row in table.rows:
                texts = _dedupe([cell.text.strip() for cell in row.cells])
                if any("\n" in t for t in texts) and (
                    len(texts) == 1 or sum(t.count("\n") for t in texts) >= 2 * len(texts)
                ):
                    # a layout table: each cell is a column of lines
                    for text in texts:
                        lines.extend(text_lines(text))
                elif texts:
                    lines.append([" ".join(t.split()) for t in texts])
    return lines


# ---------------------------------------------------------------- PDF


_STREAMS = re.compile(rb"stream\r?\n.*?endstream", re.S)  # skip binary: no false alarms there
_ACTIVE = re.compile(rb"/(?:JavaScript|JS|Launch|SubmitForm|RichMedia|XFA)\b")


def _pdf_lines(data: bytes, limits: Limits, ocr: Any) -> tuple[str, list[Line]]:
    import pypdfium2 as pdfium

    # Active content is never run (see the module docstring); a resume has no
    # business carrying it, so the file is refused rather than half-trusted.
    if _ACTIVE.search(_STREAMS.sub(b"", data)):
        raise ResumeRejected(
            "PDF carries active content (JavaScript, launch or form-submit actions); "
            "refused, nothing was run: ask the candidate for a plain PDF"
        )

    try:
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        raise ResumeRejected(f"damaged or encrypted PDF: {exc}") from None
    try:
        pages = len(document)
        if pages == 0:
            raise ResumeRejected("PDF has no pages")
        if pages > limits.max_pages:
            raise ResumeRejected(f"PDF has {pages} pages, limit {limits.max_pages}")
        lines: list[Line] = []
        chars = 0
        for index in range(pages):
            page = document[index]
            width, height = page.get_size()
            boxes = _char_runs(page.get_textpage(), height)
            chars += sum(len(b.text) for b in boxes)
            lines.extend(lines_from_boxes(boxes, width))
        if chars >= 40:
            return "pdf", lines
        # No text layer: a scan. OCR the page images.
        images = []
        for index in range(pages):
            images.extend(_page_images(document[index], limits))
        if not images:
            raise ResumeRejected("PDF has no text and no images (blank pages)")
        lines = []
        for image in images:
            lines.extend(ocr_lines(image, limits, ocr))
        return "scan_pdf", lines
    finally:
        document.close()


def _char_runs(textpage: Any, height: float) -> list[Box]:
    """Runs of characters on one line without a wide gap: the cells of the page.

    Built from loose character boxes (font ascent/descent), which stay sane for
    non-embedded CID fonts such as STSong-Light, where PDFium's own text
    rectangles lose characters.
    """
    import pypdfium2.raw as pdfium_c

    runs: list[Box] = []
    run: Box | None = None
    for i in range(textpage.count_chars()):
        code = pdfium_c.FPDFText_GetUnicode(textpage.raw, i)
        if code in (0, 0xFFFE, 0xFFFF) or code in (10, 13, 2):
            continue
        char = chr(code)
        left, bottom, right, top = textpage.get_charbox(i, loose=True)
        y0, y1 = height - top, height - bottom
        if char.isspace():
            if run is not None:
                run.text += " "
            continue
        h = y1 - y0
        if run is not None:
            mid = (y0 + y1) / 2
            same_line = run.y0 <= mid <= run.y1
            gap = left - run.x1
            if same_line and -0.5 * h < gap < 0.6 * h:
                run.text += char
                run.x1 = max(run.x1, right)
                continue
            runs.append(run)
        run = Box(left, y0, right, y1, char)
    if run is not None:
        runs.append(run)
    out = []
    for box in runs:
        box.text = " ".join(box.text.split())
        if box.text:
            out.append(box)
    return out


def _page_images(page: Any, limits: Limits) -> list[Any]:
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    images = []
    for obj in page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_IMAGE,), max_depth=2):
        if not isinstance(obj, pdfium.PdfImage):
            continue
        width, height = obj.get_px_size()
        if width * height > limits.max_image_pixels:
            raise ResumeRejected(
                f"image of {width}x{height} pixels, limit {limits.max_image_pixels} pixels"
            )
        if width * height < 200 * 200:
            continue  # logos, photos of the candidate
        images.append(obj.get_bitmap(render=False).to_pil())
    return images


# ---------------------------------------------------------------- images and OCR


def _image_lines(data: bytes, limits: Limits, ocr: Any) -> list[Line]:
    from PIL import Image

    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
    except Exception:
        raise ResumeRejected("damaged or unsupported image") from None
    if width * height > limits.max_image_pixels:
        raise ResumeRejected(
            f"image of {width}x{height} pixels, limit {limits.max_image_pixels} pixels"
        )
    try:
        image.load()
    except Exception:
        raise ResumeRejected("damaged image (truncated or corrupt data)") from None
    return ocr_lines(image, limits, ocr)


def ocr_lines(image: Any, limits: Limits, ocr: Any) -> list[Line]:
    import numpy as np

    from workers.resumes.ocr import get_engine

    engine = ocr or get_engine()
    image = image.convert("RGB")
    scale = 1.0
    side = max(image.size)
    if side > limits.max_ocr_side:
        scale = limits.max_ocr_side / side
        image = image.resize((round(image.width * scale), round(image.height * scale)))
    result = engine(np.asarray(image)[:, :, ::-1])  # rapidocr wants BGR like OpenCV
    boxes = []
    if result.boxes is not None:
        for quad, text in zip(result.boxes, result.txts, strict=False):
            xs = [p[0] for p in quad]
            ys = [p[1] for p in quad]
            if text.strip():
                boxes.append(Box(min(xs), min(ys), max(xs), max(ys), text.strip()))
    return lines_from_boxes(boxes, image.width)


# ---------------------------------------------------------------- layout


def _is_heading_text(text: str) -> bool:
    from workers.resumes.fields import heading_of

    return heading_of(text) is not None


def _split_columns(boxes: list[Box], width: float) -> list[list[Box]]:
    """Split a side-bar layout at its gutter: a band no box crosses, with headings on both sides."""
    if len(boxes) < 10:
        return [boxes]
    spans = sorted((b.x0, b.x1) for b in boxes)
    gaps = []
    reach = spans[0][1]
    for x0, x1 in spans[1:]:
        if x0 > reach:
            gaps.append((reach, x0))
        reach = max(reach, x1)
    best: list[list[Box]] | None = None
    best_gap = 0.0
    for g0, g1 in gaps:
        mid = (g0 + g1) / 2
        if not 0.15 * width < mid < 0.7 * width:
            continue
        left = [b for b in boxes if b.x1 <= g0]
        right = [b for b in boxes if b.x0 >= g1]
        if len(left) < 4 or len(right) < 4:
            continue
        if not any(_is_heading_text(b.text) for b in left):
            continue
        if not any(_is_heading_text(b.text) for b in right):
            continue
        if g1 - g0 > best_gap:
            best, best_gap = [left, right], g1 - g0
    return best or [boxes]


def _rows(boxes: list[Box]) -> list[list[Box]]:
    rows: list[list[Box]] = []
    for box in sorted(boxes, key=lambda b: (b.y0 + b.y1) / 2):
        best, best_overlap = None, 0.0
        for row in rows[-4:]:
            for other in row:
                overlap = min(box.y1, other.y1) - max(box.y0, other.y0)
                ratio = overlap / min(box.h, other.h)
                if ratio > 0.5 and ratio > best_overlap:
                    best, best_overlap = row, ratio
        if best is None:
            rows.append([box])
        else:
            best.append(box)
    for row in rows:
        row.sort(key=lambda b: b.x0)
    rows.sort(key=lambda r: min(b.y0 for b in r))
    return rows


def _join(a: str, b: str) -> str:
    if CJK.search(a[-1:]) or CJK.search(b[:1]) or a.endswith("-"):
        return a + b
    return a + " " + b


def _merge_close(row: list[Box]) -> list[Box]:
    """Runs on one row with a gap under ~a space's width are one cell."""
    out: list[Box] = []
    for box in row:
        gap = box.x0 - out[-1].x1 if out else 0.0
        if out and gap < 0.35 * min(box.h, out[-1].h):
            last = out[-1]
            text = last.text + " " + box.text if gap > 0.15 * box.h else _join(last.text, box.text)
            out[-1] = Box(last.x0, min(last.y0, box.y0), box.x1, max(last.y1, box.y1), text)
        else:
            out.append(Box(box.x0, box.y0, box.x1, box.y1, box.text))
    return out


_DATEISH = re.compile(r"(19|20)\d\d")
_DATE_TAIL = re.compile(r"^(?:(?:19|20)?\d{0,2}年)?\d{1,2}月$")


def _first_word_width(box: Box) -> float:
    text = box.text
    if CJK.match(text):
        first = text[:1]
    else:
        first = text.split(" ", 1)[0]
    return (box.x1 - box.x0) * len(first) / max(len(text), 1)


def lines_from_boxes(boxes: list[Box], width: float) -> list[Line]:
    """Rows of cells in reading order, with wrapped cells and wrapped lines joined."""
    lines: list[Line] = []
    for column in _split_columns(boxes, width):
        rows = [_merge_close(r) for r in _rows(column)]
        if not rows:
            continue
        right = max(b.x1 for r in rows for b in r)
        heading_h = sorted(b.h for r in rows for b in r if _is_heading_text(b.text)) or [0.0]
        heading_floor = 0.9 * heading_h[len(heading_h) // 2]
        merged: list[list[Box]] = []
        for row in rows:
            prev = merged[-1] if merged else None
            if prev is not None and _continues(prev, row, right, heading_floor):
                for box in row:
                    target = min(prev, key=lambda p, x=box.x0: abs(p.x0 - x))  # type: ignore[misc]
                    month = re.match(r"^\d{1,2}月$", box.text)
                    cut = re.search(r"(?:19|20)\d\d年(?![\d\s]*\d{1,2}月)", target.text)
                    if month and cut:  # "2014年1月至2015年 | 11月": the date cell wrapped
                        end = cut.end()
                        target.text = target.text[:end] + box.text + target.text[end:]
                        continue
                    target.text = _join(target.text, box.text)
                    target.last_h, target.last_x1 = box.h, box.x1
                    target.y1 = max(target.y1, box.y1)
                    target.x1 = max(target.x1, box.x1)
                continue
            merged.append(row)
        lines.extend([[b.text for b in row] for row in merged])
    return lines


def _continues(prev: list[Box], row: list[Box], right: float, heading_floor: float) -> bool:
    """Whether `row` is the wrapped rest of the cells of `prev`.

    A word like 证书 that wraps alone reads as a heading: it is one only when
    set at least about as large as the document's headings.
    """
    height = sum(b.line_h for b in prev + row) / len(prev + row)
    gap = min(b.y0 for b in row) - max(b.y1 for b in prev)
    if gap > (0.8 if len(prev) >= 2 else 1.2) * height:
        return False
    if any(_BULLET.match(b.text) for b in row):
        return False
    if any(_is_heading_text(b.text) and b.h >= heading_floor for b in row):
        return False
    if any(_is_heading_text(b.text) for b in prev):
        return False
    tol = max(0.6 * height, 3.0)
    aligned = all(any(abs(p.x0 - b.x0) < tol for p in prev) for b in row)
    if not aligned:
        return False
    if len(prev) >= 2:
        from workers.resumes.fields import has_label, has_range

        if all(_DATE_TAIL.match(b.text) for b in row):
            return True  # "2014年8月至2017年 | 10月": the date cell wrapped

        if has_range(" ".join(b.text for b in row)) or has_label(prev) or has_label(row):
            return False
        if all(abs(b.x0 - prev[0].x0) >= tol for b in row):
            return True  # the first (date) column is empty: the other cells wrapped
        return len(row) >= 2 and gap < 0.5 * height
    if len(row) != 1 or abs(prev[0].line_h - row[0].h) > 0.2 * max(prev[0].line_h, row[0].h):
        return False
    if re.search(r"(?:19|20)\d\d\s*年?\s*[)）]?$", prev[0].text):
        return False  # "..., 2011": an item ends with its year
    if any(re.search(r"@|[:：]|\d{3}[\s-]?\d{4}", b.text) for b in (prev[0], row[0])):
        return False  # contact lines stand alone however long
    end = prev[0].last_x1 or prev[0].x1
    if end - prev[0].x0 < 0.6 * (right - min(b.x0 for b in prev + row)):
        return False
    # one-cell lines: the previous one ended where the next word would not fit
    return end + _first_word_width(row[0]) > right - 0.02 * right and not _DATEISH.match(
        row[0].text
    )
