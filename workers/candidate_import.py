"""Importing a list of candidates to one job from a CSV or Excel file (issue 6, item 3).

The file never touches the disk: the portal hands its bytes over in memory, CSV is
decoded there and .xlsx is read by openpyxl (read-only mode) from a `BytesIO`. Then:

1. the whole file is validated first (`read_sheet`): the columns the box needs must be
   there, and each row is checked (a name; a valid mainland mobile number or e-mail;
   no two rows of the same person). Problems name the row as Excel numbers it (the
   header is row 1), the column and a problem code: never the cell's value, so they may
   be shown, stored and logged (ARCHITECTURE.md: no personal data in logs);
2. only a file without problems is imported (`import_sheet`): every candidate and
   application in one transaction (`compliance.decisions.create_candidates`), in the
   job's org unit, so another department's HR does not see them. A person already on
   file in the importer's scope (same phone or e-mail) applies instead of being added
   twice;
3. resume files named in the 简历/resume column are stored encrypted under the new
   candidate's key and handed to the resume pipeline (`workers.resumes.jobs.screen_resumes`,
   blob ids only on the queue).

Each import leaves an `ImportBatch` row: who, when, counts and problem codes.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis import Redis

from appliance.records import ImportBatch, ImportStatus
from appliance.store import Store
from compliance.actors import Actor
from compliance.decisions import DecisionRefused, NewCandidate, create_candidates
from compliance.gate import Gate

log = logging.getLogger(__name__)

MAX_SHEET_BYTES = 10 * 1024 * 1024
"""A list of thousands of candidates is well under 1 MB; 10 MB leaves room for formatting."""
MAX_ROWS = 5000
MAX_COLUMNS = 50
MAX_CELL = 200
"""Characters in one cell: a name, a phone, an e-mail, a source; more is not a list of people."""

COLUMNS: Mapping[str, tuple[str, ...]] = {
    "name": ("姓名", "名字", "name", "full name"),
    "phone": ("手机", "手机号", "手机号码", "电话", "phone", "mobile"),
    "email": ("邮箱", "电子邮箱", "电子邮件", "email", "e-mail"),
    "source": ("来源", "渠道", "source"),
    "referrer": ("推荐人", "referrer", "referred by"),
    "resume": ("简历", "简历文件", "resume", "resume file"),
}
"""Header spellings the box understands (case and spaces ignored), per field."""
REQUIRED = ("name", "phone", "email")

_MOBILE = re.compile(r"1[3-9]\d{9}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class ImportRejected(ValueError):
    """The file as a whole cannot be imported; `code` says why (the portal translates it).

    Codes: too_large, not_a_spreadsheet, old_excel, bad_file, empty, missing_columns,
    too_many_rows, too_many_columns.
    """

    def __init__(self, code: str, columns: Sequence[str] = ()) -> None:
        super().__init__(code)
        self.code = code
        self.columns = tuple(columns)


@dataclass(frozen=True)
class RowProblem:
    """Row `row` (as Excel numbers it; 0 for the file), column `column`: `problem` (a code:
    missing_name, bad_phone, bad_email, no_contact, too_long, duplicate_row, unknown_resume,
    resume_too_large, duplicate_candidate). `other`: the row it duplicates."""

    row: int
    column: str
    problem: str
    other: int | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"row": self.row, "column": self.column, "problem": self.problem}
        if self.other is not None:
            data["other"] = self.other
        return data


@dataclass(frozen=True)
class SheetRow:
    number: int
    name: str
    phone: str | None
    email: str | None
    source: str | None
    referrer: str | None
    resume: str | None


@dataclass
class Sheet:
    kind: str
    rows: list[SheetRow] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)


# --- reading ---------------------------------------------------------------------------------


def read_sheet(data: bytes, filename: str = "") -> Sheet:
    """Validate a whole CSV or .xlsx file in memory; ImportRejected for the file as a whole."""
    if len(data) > MAX_SHEET_BYTES:
        raise ImportRejected("too_large")
    kind, table = _table(data, filename)
    header = next(table, None)
    if header is None:
        raise ImportRejected("empty")
    columns = _columns(header)
    sheet = Sheet(kind)
    filled = 0
    for number, cells in enumerate(table, start=2):
        if not any(c.strip() for c in cells):
            continue  # blank lines (Excel keeps formatted empty rows): not people
        filled += 1
        if filled > MAX_ROWS:
            raise ImportRejected("too_many_rows")
        _add_row(sheet, number, columns, cells)
    if not sheet.rows and not sheet.problems:
        raise ImportRejected("empty")
    _mark_duplicates(sheet)
    return sheet


def _table(data: bytes, filename: str) -> tuple[str, Iterator[list[str]]]:
    if data.startswith(b"PK\x03\x04"):
        return "xlsx", _xlsx_rows(data)
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise ImportRejected("old_excel")  # .xls (BIFF): save as .xlsx or CSV
    if filename.lower().endswith((".xlsx", ".xlsm", ".xls")):
        raise ImportRejected("bad_file")
    return "csv", _csv_rows(data)


def _xlsx_rows(data: bytes) -> Iterator[list[str]]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, TypeError) as exc:
        raise ImportRejected("bad_file") from exc
    except Exception as exc:  # openpyxl raises its own kinds for damaged parts
        raise ImportRejected("bad_file") from exc
    try:
        sheet = book.worksheets[0] if book.worksheets else None
        if sheet is None:
            raise ImportRejected("empty")
        try:
            for values in sheet.iter_rows(values_only=True):
                if len(values) > MAX_COLUMNS and any(v is not None for v in values[MAX_COLUMNS:]):
                    raise ImportRejected("too_many_columns")
                yield [_cell_text(v) for v in values[:MAX_COLUMNS]]
        except ImportRejected:
            raise
        except Exception as exc:
            raise ImportRejected("bad_file") from exc
    finally:
        book.close()


def _cell_text(value: Any) -> str:
    """A cell as text; Excel stores a typed-in mobile number as a number (13800001234.0)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _csv_rows(data: bytes) -> Iterator[list[str]]:
    text = _decode(data)
    first = text.split("\n", 1)[0]
    delimiter = "\t" if first.count("\t") > first.count(",") else ","
    try:
        for cells in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
            if len(cells) > MAX_COLUMNS:
                raise ImportRejected("too_many_columns")
            yield [c.strip() for c in cells]
    except csv.Error as exc:
        raise ImportRejected("bad_file") from exc


def _decode(data: bytes) -> str:
    """UTF-8 (with or without BOM), else GB18030: what Excel on a Chinese PC saves as CSV."""
    if b"\x00" in data[:4096]:
        raise ImportRejected("not_a_spreadsheet")
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ImportRejected("not_a_spreadsheet")


def _normal_header(text: str) -> str:
    return re.sub(r"[\s_*（）()]+", " ", text).strip().casefold()


def _columns(header: list[str]) -> dict[str, int]:
    """Field -> column index; ImportRejected naming the required fields that are missing."""
    spelled = {
        _normal_header(alias): name for name, aliases in COLUMNS.items() for alias in aliases
    }
    found: dict[str, int] = {}
    for index, title in enumerate(header):
        name = spelled.get(_normal_header(title))
        if name is not None and name not in found:
            found[name] = index
    missing = [name for name in REQUIRED if name not in found]
    if missing:
        raise ImportRejected("missing_columns", missing)
    return found


def _cell(cells: list[str], columns: dict[str, int], name: str) -> str:
    index = columns.get(name)
    return cells[index].strip() if index is not None and index < len(cells) else ""


def clean_phone(value: str) -> str:
    """A mobile number as stored: spaces, dashes, brackets and a +86 prefix dropped."""
    phone = re.sub(r"[\s\-()]", "", value)
    return phone[3:] if phone.startswith("+86") else phone


def _add_row(sheet: Sheet, number: int, columns: dict[str, int], cells: list[str]) -> None:
    values = {name: _cell(cells, columns, name) for name in COLUMNS}
    problems = [RowProblem(number, n, "too_long") for n, v in values.items() if len(v) > MAX_CELL]
    phone = clean_phone(values["phone"])
    if not values["name"]:
        problems.append(RowProblem(number, "name", "missing_name"))
    if phone and not _MOBILE.fullmatch(phone):
        problems.append(RowProblem(number, "phone", "bad_phone"))
    if values["email"] and not _EMAIL.fullmatch(values["email"]):
        problems.append(RowProblem(number, "email", "bad_email"))
    if not phone and not values["email"]:
        problems.append(RowProblem(number, "phone", "no_contact"))
    if problems:
        sheet.problems.extend(problems)
        return
    sheet.rows.append(
        SheetRow(
            number=number,
            name=values["name"],
            phone=phone or None,
            email=values["email"] or None,
            source=values["source"] or None,
            referrer=values["referrer"] or None,
            resume=values["resume"] or None,
        )
    )


def _mark_duplicates(sheet: Sheet) -> None:
    """Two rows with the same mobile or e-mail are one person twice: say which rows."""
    seen: dict[str, int] = {}
    for row in sheet.rows:
        keys = []
        if row.phone:
            keys.append(("phone", row.phone))
        if row.email:
            keys.append(("email", row.email.casefold()))
        for column, key in keys:
            first = seen.setdefault(f"{column}:{key}", row.number)
            if first != row.number:
                sheet.problems.append(RowProblem(row.number, column, "duplicate_row", first))
                break


# --- importing -------------------------------------------------------------------------------


@dataclass
class ImportOutcome:
    batch_id: int
    status: ImportStatus
    created: int = 0
    existing: int = 0
    resumes: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    candidate_ids: list[int] = field(default_factory=list)
    application_ids: list[int] = field(default_factory=list)


def import_sheet(
    store: Store,
    gate: Gate,
    actor: Actor,
    job_id: int,
    sheet: Sheet,
    purpose: str,
    resumes: Mapping[str, bytes] | None = None,
    redis: Redis | None = None,
) -> ImportOutcome:
    """Import a validated sheet to job `job_id`: all rows or none (see the module docstring).

    A sheet with problems, or resumes that do not match the 简历/resume column, writes
    nothing but the rejected `ImportBatch`. Gate refusals (AccessDenied, NotInScope)
    propagate, after the gate recorded them.
    """
    files = dict(resumes or {})
    problems = list(sheet.problems) + _resume_problems(sheet, files)
    if problems:
        return _rejected(store, actor, job_id, sheet, problems)
    people = [
        NewCandidate(r.name, r.phone, r.email, r.source or f"import:{sheet.kind}", r.referrer)
        for r in sheet.rows
    ]
    try:
        created = create_candidates(store, gate, actor, job_id, people, purpose)
    except DecisionRefused as exc:
        return _rejected(store, actor, job_id, sheet, [RowProblem(0, "", exc.code)])
    stored = _hand_over_resumes(store, sheet, created.subject_ids, files, redis)
    batch = _batch(store, actor, job_id, sheet, ImportStatus.DONE, [])
    batch_id = _save(
        store,
        batch,
        created=created.new_count,
        existing=len(people) - created.new_count,
        resumes=stored,
    )
    log.info(
        "import batch %d: %d rows, %d new, %d resumes",
        batch_id,
        len(people),
        created.new_count,
        stored,
    )
    return ImportOutcome(
        batch_id=batch_id,
        status=ImportStatus.DONE,
        created=created.new_count,
        existing=len(people) - created.new_count,
        resumes=stored,
        candidate_ids=created.candidate_ids,
        application_ids=created.application_ids,
    )


def _resume_problems(sheet: Sheet, files: Mapping[str, bytes]) -> list[RowProblem]:
    from workers.resumes.limits import DEFAULT_LIMITS

    problems = []
    for row in sheet.rows:
        if row.resume is None:
            continue
        if row.resume not in files:
            problems.append(RowProblem(row.number, "resume", "unknown_resume"))
        elif len(files[row.resume]) > DEFAULT_LIMITS.max_bytes:
            problems.append(RowProblem(row.number, "resume", "resume_too_large"))
    return problems


def _batch(
    store: Store,
    actor: Actor,
    job_id: int,
    sheet: Sheet,
    status: ImportStatus,
    problems: list[RowProblem],
) -> ImportBatch:
    return ImportBatch(
        job_id=job_id,
        actor_id=actor.user_id,
        status=status,
        file_kind=sheet.kind,
        rows=len(sheet.rows) + len({p.row for p in sheet.problems}),
        problems=[p.as_dict() for p in problems],
    )


def _save(store: Store, batch: ImportBatch, **counts: int) -> int:
    for name, value in counts.items():
        setattr(batch, name, value)
    with store.transaction() as db:
        db.add(batch)
        db.flush()
        return batch.id


def _rejected(
    store: Store, actor: Actor, job_id: int, sheet: Sheet, problems: list[RowProblem]
) -> ImportOutcome:
    problems = sorted(problems, key=lambda p: (p.row, p.column))
    batch_id = _save(store, _batch(store, actor, job_id, sheet, ImportStatus.REJECTED, problems))
    log.info("import batch %d rejected: %d problems", batch_id, len(problems))
    return ImportOutcome(batch_id=batch_id, status=ImportStatus.REJECTED, problems=problems)


def _hand_over_resumes(
    store: Store,
    sheet: Sheet,
    subject_ids: list[str],
    files: Mapping[str, bytes],
    redis: Redis | None,
) -> int:
    """Store each named resume under its candidate's key and queue it for parsing.

    After the candidates' transaction: a file that cannot be stored leaves a candidate
    without a resume (a state the portal shows and HR can fix), never a half-written row.
    """
    blob_ids = []
    for row, subject_id in zip(sheet.rows, subject_ids, strict=True):
        if row.resume is None:
            continue
        blob_ids.append(store.blobs.put(subject_id, [files[row.resume]]))
    if blob_ids:
        queue_resumes(store, redis, blob_ids)
    return len(blob_ids)


def queue_resumes(store: Store, redis: Redis | None, blob_ids: Sequence[str]) -> None:
    """Hand stored resume blobs to the documents queue (ids only); without Redis (a test, or
    the queue down) they wait, listed by `screen_resumes` callers from the blobs."""
    if redis is None or not blob_ids:
        return
    from workers.resumes.jobs import screen_resumes

    try:
        screen_resumes.enqueue(store, redis, *blob_ids)
    except Exception:  # the queue is down: the files are stored; log ids only
        log.warning("could not queue %d resumes for parsing", len(blob_ids))
