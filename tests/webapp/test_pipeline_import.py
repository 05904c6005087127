"""Importing candidates from CSV/Excel through the portal (issue 6, item 3 and "Must show"):
the whole file is checked first; a malformed Excel file, a wrong column, a bad phone and a
50 MB upload each get a clear message in Chinese and English, and add nothing at all."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from openpyxl import Workbook
from sqlalchemy import func, select

from appliance.records import (
    Application,
    AuditEvent,
    Candidate,
    ImportBatch,
    ImportStatus,
    Job,
    OrgUnit,
    Referral,
)
from appliance.store import Store

HEADER = ["姓名", "手机", "邮箱", "来源", "推荐人"]


def people(n: int, start: int = 0) -> list[list[str]]:
    return [
        [f"导入者{i:02d}", f"1390000{i:04d}", f"import{i}@example.org", "招聘会", ""]
        for i in range(start, start + n)
    ]


def xlsx(rows: list[list[object]], header: list[str] = HEADER) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def east_job(store: Store) -> int:
    """The demo cardiology job (east campus), which hr.east may import to."""
    with store.session() as db:
        return (
            db.scalars(
                select(Job.id)
                .join(OrgUnit, Job.org_unit_id == OrgUnit.id)
                .where(OrgUnit.code == "EAST-CARD")
            ).first()
            or 0
        )


def counts(store: Store) -> tuple[int, int, int]:
    with store.session() as db:
        return (
            db.scalar(select(func.count(Candidate.id))) or 0,
            db.scalar(select(func.count(Application.id))) or 0,
            db.scalar(select(func.count(Referral.id))) or 0,
        )


def english(client: FlaskClient) -> None:
    """Switch the session to English, as `?lang=en` does (without a page that reads data)."""
    with client.session_transaction() as session:
        session["lang"] = "en"


def upload(
    client: FlaskClient, job_id: int, data: bytes, name: str = "list.xlsx", **extra: object
) -> tuple[int, str]:
    form: dict[str, object] = {"file": (io.BytesIO(data), name), **extra}
    response = client.post(
        f"/jobs/{job_id}/import",
        data=form,
        content_type="multipart/form-data",
        headers={"Accept": "text/html"},  # what a browser sends; API clients get JSON
    )
    return response.status_code, response.get_data(as_text=True)


def test_import_of_ten_from_excel_creates_them_in_the_jobs_department(
    login_as: Callable[[str], FlaskClient], demo_store: Store
) -> None:
    client = login_as("hr.east")
    job_id = east_job(demo_store)
    before = counts(demo_store)
    rows = people(10)
    rows[0][4] = "张主任"
    status, page = upload(client, job_id, xlsx(rows))
    assert status == 200, page[:500]
    assert "新增 10 位候选人" in page
    after = counts(demo_store)
    assert after[0] - before[0] == 10 and after[1] - before[1] == 10 and after[2] - before[2] == 1
    with demo_store.session() as db:
        unit = db.scalar(select(Job.org_unit_id).where(Job.id == job_id))
        new = db.scalars(select(Candidate).order_by(Candidate.id.desc()).limit(10)).all()
        assert {c.org_unit_id for c in new} == {unit}
        assert sorted(c.name for c in new) == sorted(r[0] for r in rows)
        batch = db.scalars(select(ImportBatch).order_by(ImportBatch.id.desc())).first()
        assert batch is not None and batch.status is ImportStatus.DONE and batch.created == 10
    board = client.get(f"/jobs/{job_id}/board").get_data(as_text=True)
    assert "导入者00" in board and "导入者09" in board


def test_another_departments_hr_cannot_see_the_imported_candidates(
    login_as: Callable[[str], FlaskClient], demo_store: Store
) -> None:
    job_id = east_job(demo_store)
    status, _page = upload(login_as("hr.east"), job_id, xlsx(people(3)))
    assert status == 200
    west = login_as("hr.west")
    listing = west.get("/portal/candidates").get_data(as_text=True)
    assert "导入者00" not in listing
    with demo_store.session() as db:
        newest = db.scalars(select(Candidate.id).order_by(Candidate.id.desc())).first()
    assert west.get(f"/portal/candidates/{newest}").status_code == 404
    assert west.get(f"/jobs/{job_id}/board").status_code == 404
    assert upload(west, job_id, xlsx(people(1, 50)))[0] == 404


def test_the_same_person_again_gets_an_application_not_a_second_record(
    login_as: Callable[[str], FlaskClient], demo_store: Store
) -> None:
    client = login_as("hr.east")
    job_id = east_job(demo_store)
    assert upload(client, job_id, xlsx(people(2)))[0] == 200
    before = counts(demo_store)
    status, page = upload(client, job_id, xlsx(people(3)))  # two known, one new
    assert status == 200, page[:300]
    assert "新增 1 位候选人，2 位已在库中" in page
    assert counts(demo_store)[0] - before[0] == 1


def test_malformed_excel_is_refused_clearly_and_adds_nothing(
    login_as: Callable[[str], FlaskClient], demo_store: Store
) -> None:
    client = login_as("hr.east")
    job_id = east_job(demo_store)
    before = counts(demo_store)
    broken = xlsx(people(3))[:900] + b"\x00garbage" * 50
    status, page = upload(client, job_id, broken)
    assert status == 400
    assert (
        "文件已损坏，或不是有效的 Excel（.xlsx）/CSV 文件。" in page and "未导入任何候选人" in page
    )
    status, page = upload(client, job_id, b"PK\x03\x04 not a zip at all", "list.xlsx")
    assert status == 400 and "文件已损坏" in page
    english(client)
    status, page = upload(client, job_id, broken)
    assert status == 400
    assert "The file is damaged, or is not a valid Excel (.xlsx) or CSV file." in page
    assert counts(demo_store) == before


def test_a_wrong_column_names_what_is_missing_and_adds_nothing(
    login_as: Callable[[str], FlaskClient], demo_store: Store
) -> None:
    client = login_as("hr.east")
    job_id = east_job(demo_store)
    before = counts(demo_store)
    status, page = upload(client, job_id, xlsx(people(2), ["姓名", "电话号码", "邮箱"]))
    assert status == 400
    assert "缺少必需的列：手机。" in page
    csv = "name,mobile no,email\n张三,13900001111,z@example.org\n".encode()
    english(client)
    status, page = upload(client, job_id, csv, "list.csv")
    assert status == 400
    assert "Required columns are missing: Phone." in page
    assert counts(demo_store) == before


def test_one_bad_phone_refuses_the_whole_file_naming_the_row(
    login_as: Callable[[str], FlaskClient], demo_store: Store
) -> None:
    client = login_as("hr.east")
    job_id = east_job(demo_store)
    before = counts(demo_store)
    rows = people(5)
    rows[3][1] = "1234"
    status, page = upload(client, job_id, xlsx(rows))
    assert status == 400
    assert "手机号格式不正确（应为 11 位中国大陆手机号）" in page
    assert "<td>5</td>" in page  # the fourth person is on Excel row 5 (the header is row 1)
    assert "1234" not in page.split("problems")[1].split("</table>")[0]  # no cell value echoed
    assert counts(demo_store) == before
    with demo_store.session() as db:
        batch = db.scalars(select(ImportBatch).order_by(ImportBatch.id.desc())).first()
        assert batch is not None and batch.status is ImportStatus.REJECTED
        assert batch.problems == [{"row": 5, "column": "phone", "problem": "bad_phone"}]
        assert batch.created == 0


def test_a_50_mb_upload_gets_a_clear_413_and_nothing_is_written(
    login_as: Callable[[str], FlaskClient], demo_store: Store
) -> None:
    client = login_as("hr.east")
    job_id = east_job(demo_store)
    before = counts(demo_store)
    with demo_store.session() as db:
        events = db.scalar(select(func.count(AuditEvent.seq)))
    big = xlsx(people(2)) + b"\x00" * (50 * 1024 * 1024)
    status, page = upload(client, job_id, big)
    assert status == 413
    assert "上传的内容太大：此页面最多接受 32 MB。没有导入或保存任何内容。" in page
    english(client)
    status, page = upload(client, job_id, big)
    assert status == 413
    assert "The upload is too large: this page accepts at most 32 MB." in page
    assert counts(demo_store) == before
    with demo_store.session() as db:
        assert db.scalar(select(func.count(AuditEvent.seq))) == events
        assert db.scalar(select(func.count(ImportBatch.id))) == 0


def test_a_list_over_10_mb_within_the_body_limit_is_refused(
    login_as: Callable[[str], FlaskClient], demo_store: Store
) -> None:
    client = login_as("hr.east")
    job_id = east_job(demo_store)
    before = counts(demo_store)
    status, page = upload(
        client, job_id, b"name,phone,email\n" + b"x" * (11 * 1024 * 1024), "l.csv"
    )
    assert status == 400 and "名单文件太大：最多 10 MB。" in page
    assert counts(demo_store) == before


def test_uploads_stay_in_memory(
    login_as: Callable[[str], FlaskClient], demo_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A list over Werkzeug's 500 KB spooling threshold is parsed without a temporary file
    (Werkzeug's spool rolls over through `tempfile.TemporaryFile`)."""
    made: list[object] = []
    original = tempfile.TemporaryFile

    def spy(*args: Any, **kwargs: Any) -> Any:
        made.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", spy)
    client = login_as("hr.east")
    rows = people(8)
    listing = "姓名,手机,邮箱\n" + "\n".join(f"{r[0]},{r[1]},{r[2]}" for r in rows) + "\n"
    padded = listing.encode() + b"\n" * (700 * 1024)  # blank lines: skipped, but over 500 KB
    status, page = upload(client, east_job(demo_store), padded, "list.csv")
    assert status == 200, page[:300]
    assert "新增 8 位候选人" in page
    assert made == []
