"""Excel exports (issue 6, item 7): what the account may see, masked as the gate says, no
formulas, and an `export` event per person in the audit log."""

from __future__ import annotations

import io
from collections.abc import Callable

from flask.testing import FlaskClient
from openpyxl import load_workbook
from sqlalchemy import select
from werkzeug.test import TestResponse

from appliance.records import Candidate, Job
from appliance.store import Store
from compliance.masks import apply_mask
from tests.webapp.test_row_scope import (
    CandidateFile,
    add_candidate_file,
    events_since,
    file_values,
    last_seq,
)

Login = Callable[[str], FlaskClient]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _sheet(response: TestResponse) -> dict[int, dict[str, object]]:
    """Rows of the workbook by candidate id, as {header: cell value}."""
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert response.mimetype == XLSX
    book = load_workbook(io.BytesIO(response.get_data()))
    sheet = book.active
    assert sheet is not None
    rows = list(sheet.iter_rows(values_only=True))
    headers = [str(h) for h in rows[0]]
    return {int(r[0]): dict(zip(headers, r, strict=True)) for r in rows[1:]}  # type: ignore[arg-type]


def _file(store: Store, tag: str, org: str = "EAST-CARD") -> CandidateFile:
    values = file_values(tag)
    values["candidates.name"] = f'=HYPERLINK("http://evil.example","{tag}")'
    return add_candidate_file(store, org, tag, ["interviewer"], values=values)


def test_hr_export_masks_id_numbers_and_is_recorded(login_as: Login, demo_store: Store) -> None:
    """HR sees contact data whole but the ID number masked (policy); the formula-looking name is
    text, not a formula; one export event per person, naming masked fields as masked."""
    east = _file(demo_store, "XlsEast")
    before = last_seq(demo_store)
    rows = _sheet(login_as("hr.east").get("/exports/candidates.xlsx"))
    row = rows[east.candidate_id]
    values = east.values
    assert row["手机"] == values["candidates.phone"]
    assert row["身份证号"] == apply_mask("id_number", values["candidates.id_number"])
    assert row["身份证号"] != values["candidates.id_number"]
    assert row["姓名"] == values["candidates.name"]  # a string cell, starting with "="
    events = events_since(demo_store, before)
    mine = [e for e in events if east.subject_id in e.subject_ids]
    assert len(mine) == 1
    event = mine[0]
    assert (event.actor, event.action, event.result) == ("hr.east", "export", "allowed")
    assert "candidates.id_number:masked" in event.fields and "candidates.phone" in event.fields
    exported = [e for e in events if e.action == "export"]
    assert len(exported) == len(rows)


def test_formula_text_stays_text(login_as: Login, demo_store: Store) -> None:
    east = _file(demo_store, "XlsFormula")
    response = login_as("hr.east").get("/exports/candidates.xlsx")
    book = load_workbook(io.BytesIO(response.get_data()))
    sheet = book.active
    assert sheet is not None
    cells = [
        c for row in sheet.iter_rows() for c in row if c.value == east.values["candidates.name"]
    ]
    assert cells and all(c.data_type == "s" for c in cells)


def test_dpo_gets_masked_contact_data(login_as: Login, demo_store: Store) -> None:
    east = _file(demo_store, "XlsDpo")
    row = _sheet(login_as("dpo").get("/exports/candidates.xlsx"))[east.candidate_id]
    values = east.values
    assert row["手机"] == apply_mask("phone", values["candidates.phone"])
    assert row["邮箱"] == apply_mask("email", values["candidates.email"])
    assert row["地址"] != values["candidates.address"]


def test_export_of_one_job_and_of_another_branch(login_as: Login, demo_store: Store) -> None:
    east = _file(demo_store, "XlsJob")
    with demo_store.session() as db:
        nursing = db.scalars(select(Job.id).where(Job.title.contains("护理部"))).one()
        cardiology = db.scalars(select(Job.id).where(Job.title.contains("心内科"))).one()
    client = login_as("hr.east")
    assert east.candidate_id in _sheet(client.get(f"/exports/candidates.xlsx?job={cardiology}"))
    assert east.candidate_id not in _sheet(client.get(f"/exports/candidates.xlsx?job={nursing}"))
    west = _sheet(login_as("hr.west").get("/exports/candidates.xlsx"))
    assert east.candidate_id not in west
    with demo_store.session() as db:
        west_ids = set(db.scalars(select(Candidate.id).where(Candidate.source == "demo")))
    assert set(west) <= west_ids
    assert client.get("/exports/candidates.xlsx?job=x").status_code == 400
    assert client.get("/exports/candidates.xlsx?job=424242").status_code == 404


def test_api_xlsx_for_the_integration_account(login_as: Login, demo_store: Store) -> None:
    """The integration account: phone masked, ID number and address absent (policy)."""
    east = _file(demo_store, "XlsApi")
    before = last_seq(demo_store)
    rows = _sheet(login_as("integration").get("/api/v1/candidates/export.xlsx"))
    row = rows[east.candidate_id]
    assert row["phone"] == apply_mask("phone", east.values["candidates.phone"])
    assert row["email"] == east.values["candidates.email"]
    assert "id_number" not in row and "address" not in row
    events = [e for e in events_since(demo_store, before) if east.subject_id in e.subject_ids]
    assert [(e.actor, e.action) for e in events] == [("integration", "export")]


def test_roles_that_may_not_export_are_refused(login_as: Login, demo_store: Store) -> None:
    before = last_seq(demo_store)
    assert login_as("interviewer").get("/exports/candidates.xlsx").status_code == 403
    assert login_as("auditor").get("/exports/candidates.xlsx").status_code == 403
    denied = [e for e in events_since(demo_store, before) if e.result == "denied"]
    assert {e.actor for e in denied} == {"interviewer", "auditor"}
