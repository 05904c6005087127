"""Reading and importing candidate lists (issue 6, item 3): CSV and .xlsx in memory, every
row checked before anything is written, problems by row number and code (never a value),
one transaction, resumes handed to the resume pipeline by blob id."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from openpyxl import Workbook
from rq import Queue
from sqlalchemy import func, select

from appliance.datadir import init_data_dir
from appliance.records import Application, Candidate, ImportStatus, JobRun
from appliance.store import Store
from compliance.gate import Gate
from compliance.signing import stop_agent
from tests.compliance.test_decisions import job_in, staff
from tests.conftest import settings_for
from workers.candidate_import import ImportRejected, RowProblem, import_sheet, read_sheet
from workers.jobs import SERIALIZER


def xlsx(rows: list[list[object]]) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_excel_numbers_and_english_headers_are_read() -> None:
    data = xlsx([["Name", "Mobile", "E-mail", "Source"], ["王五", 13800138000, "", "校招"]])
    sheet = read_sheet(data, "list.xlsx")
    assert sheet.kind == "xlsx" and sheet.problems == []
    row = sheet.rows[0]
    assert (row.number, row.name, row.phone, row.email, row.source) == (
        2,
        "王五",
        "13800138000",
        None,
        "校招",
    )


def test_csv_from_a_chinese_excel_is_gb18030() -> None:
    text = "姓名,手机号码,邮箱,推荐人\r\n赵六,+86 139-0000-1234,zhao@example.org,钱医生\r\n"
    sheet = read_sheet(text.encode("gb18030"), "list.csv")
    assert sheet.kind == "csv" and sheet.problems == []
    assert sheet.rows[0].phone == "13900001234" and sheet.rows[0].referrer == "钱医生"


def test_every_row_is_checked_and_problems_name_rows_not_values() -> None:
    data = xlsx(
        [
            ["姓名", "手机", "邮箱"],
            ["甲", "13900000001", ""],
            ["", "13900000002", ""],
            ["丙", "139", "not-an-email"],
            ["丁", "", ""],
            [None, None, None],
            ["戊", "13900000001", ""],
        ]
    )
    sheet = read_sheet(data, "x.xlsx")
    assert sheet.problems == [
        RowProblem(3, "name", "missing_name"),
        RowProblem(4, "phone", "bad_phone"),
        RowProblem(4, "email", "bad_email"),
        RowProblem(5, "phone", "no_contact"),
        RowProblem(7, "phone", "duplicate_row", 2),
    ]
    assert "139" not in repr([p.as_dict() for p in sheet.problems])


@pytest.mark.parametrize(
    ("data", "name", "code"),
    [
        (b"PK\x03\x04\x14\x00broken zip", "a.xlsx", "bad_file"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512, "a.xls", "old_excel"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "a.csv", "not_a_spreadsheet"),
        (b"", "a.csv", "empty"),
        ("姓名,电话号码\n张三,13900000000\n".encode(), "a.csv", "missing_columns"),
        (b"name,phone,email\n" + b"a,13900000000,a@b.cn\n" * 5001, "a.csv", "too_many_rows"),
        (b"x" * (10 * 1024 * 1024 + 1), "a.csv", "too_large"),
    ],
)
def test_files_that_cannot_be_imported_say_why(data: bytes, name: str, code: str) -> None:
    with pytest.raises(ImportRejected) as rejected:
        read_sheet(data, name)
    assert rejected.value.code == code


def test_missing_columns_are_named() -> None:
    with pytest.raises(ImportRejected) as rejected:
        read_sheet(xlsx([["姓名", "电话号码"], ["张三", "13900000000"]]), "a.xlsx")
    assert rejected.value.columns == ("phone", "email")


@pytest.fixture
def demo(short_tmp: Path) -> Iterator[Store]:
    settings = settings_for(short_tmp / "data")
    store = init_data_dir(settings, "TEST-PASS", demo=True).store
    yield store
    store.close()
    stop_agent(settings.data_dir / "gnupg")


def test_a_sheet_with_problems_writes_nothing_but_its_batch(demo: Store) -> None:
    hr = staff(demo, "hr.east")
    sheet = read_sheet(xlsx([["姓名", "手机", "邮箱"], ["甲", "13900000001", ""], ["乙", "1", ""]]))
    with demo.session() as db:
        before = db.scalar(select(func.count(Candidate.id)))
    outcome = import_sheet(demo, Gate(demo), hr, job_in(demo, "EAST-CARD"), sheet, "screening")
    assert outcome.status is ImportStatus.REJECTED and outcome.created == 0
    with demo.session() as db:
        assert db.scalar(select(func.count(Candidate.id))) == before


def test_resumes_named_in_the_list_go_to_the_resume_pipeline(
    demo: Store, redis_box: object
) -> None:
    redis = redis_box.redis  # type: ignore[attr-defined]
    hr = staff(demo, "hr.east")
    sheet = read_sheet(
        xlsx(
            [
                ["姓名", "手机", "邮箱", "简历"],
                ["简历甲", "13900000021", "", "jia.pdf"],
                ["简历乙", "13900000022", "", ""],
            ]
        )
    )
    missing = import_sheet(demo, Gate(demo), hr, job_in(demo, "EAST-CARD"), sheet, "screening")
    assert missing.problems == [RowProblem(2, "resume", "unknown_resume")]
    pdf = b"%PDF-1.4 resume of jia"
    queue = Queue("documents", connection=redis, serializer=SERIALIZER)
    queued = queue.count
    outcome = import_sheet(
        demo, Gate(demo), hr, job_in(demo, "EAST-CARD"), sheet, "screening", {"jia.pdf": pdf}, redis
    )
    assert outcome.status is ImportStatus.DONE and outcome.created == 2 and outcome.resumes == 1
    with demo.session() as db:
        jia = db.get_one(Candidate, outcome.candidate_ids[0])
        run = db.scalars(select(JobRun).where(JobRun.name.like("%screen_resumes"))).one()
        apps = db.scalar(
            select(func.count(Application.id)).where(Application.id.in_(outcome.application_ids))
        )
        assert apps == 2
    assert queue.count == queued + 1
    job = queue.fetch_job(run.rq_job_id)
    assert job is not None
    _name, *blob_ids = job.args
    assert len(blob_ids) == 1 and demo.blobs.subject_of(blob_ids[0]) == jia.subject_id
    with demo.blobs.open(blob_ids[0]) as reader:
        assert reader.read() == pdf
    assert "简历甲" not in repr(job.args) and "13900000021" not in repr(job.args)
    job.delete()
