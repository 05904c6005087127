"""Issue 6, "Must show": the HR portal's main flow in a real headless Chromium.

An HR user of the east campus signs in with password + TOTP, creates a job with a
scoring template, imports 10 candidates from an Excel file, ticks all 10 on the
pipeline board and invites them; the outbox lists 10 messages. The west campus's HR
then signs in and sees none of it: not the job, not the candidates, not the messages,
and the direct URLs answer 404. Every page is watched for console errors and CSP
violations (conftest.py). bench/portal_flow_bench.py times the same flow.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import expect

from tests.e2e.portal_driver import (
    APPLICANTS,
    BrowserProblems,
    NewJob,
    PortalUser,
    applicants_xlsx,
    applied_cards,
    create_job,
    import_applicants,
    invite_all_applied,
    open_board_after_import,
    outbox_rows,
)

DIMENSIONS = ("沟通能力", "团队协作", "专业知识", "应变能力", "语言逻辑")
NAMES = [name for name, _phone, _email in APPLICANTS]


def test_hr_creates_a_job_imports_ten_and_invites_them_other_campus_sees_nothing(
    person: Callable[[], PortalUser], problems: BrowserProblems
) -> None:
    east = person()
    east.sign_in("hr.east")
    expect(east.page.locator("form.signout")).to_be_visible()

    # A job with a scoring template (the default five dimensions, weights and rubrics).
    job_id = create_job(east, NewJob())
    page = east.page
    expect(page.locator("h1")).to_contain_text(NewJob().title)
    dimensions = page.locator("table.dimensions tbody tr")
    expect(dimensions).to_have_count(len(DIMENSIONS))
    for name in DIMENSIONS:
        expect(dimensions.filter(has_text=name)).to_have_count(1)
    expect(page.locator("ol.questions > li")).not_to_have_count(0)

    # Ten candidates from an Excel file, all checked before any is written.
    import_applicants(east, applicants_xlsx())
    expect(page.locator("[role=alert]")).to_have_count(0)
    expect(page.locator("p.done[role=status]")).to_contain_text("10")

    open_board_after_import(east)
    cards = applied_cards(page)
    expect(cards).to_have_count(10)
    for name in NAMES:
        expect(cards.filter(has_text=name)).to_have_count(1)
    candidate_path = str(cards.first.locator("a").get_attribute("href")).split("?")[0]
    assert re.fullmatch(r"/portal/candidates/\d+", candidate_path), candidate_path

    # All ten ticked and invited; the outbox shows one e-mail per candidate.
    invited = invite_all_applied(east)
    assert len(invited) == 10
    rows = outbox_rows(page)
    expect(rows).to_have_count(10)
    listed = {int(rows.nth(i).locator("td").nth(1).inner_text()) for i in range(10)}
    assert listed == set(invited)
    expect(page.locator(".inv-flashes")).to_contain_text("10")

    # The west campus's HR: no job, no candidate, no message; direct URLs answer 404.
    west = person()
    west.sign_in("hr.west")
    wpage = west.page
    west.open("/jobs")
    expect(wpage.locator("main")).not_to_contain_text(NewJob().title)
    west.open("/portal/candidates")
    for name in NAMES:
        expect(wpage.locator("main")).not_to_contain_text(name)
    west.open("/invitations")
    expect(outbox_rows(wpage)).to_have_count(0)
    for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/board", f"/jobs/{job_id}/import"):
        answer = wpage.goto(west.box.url(path))
        assert answer is not None and answer.status == 404, path
        expect(wpage.locator("main")).not_to_contain_text(NAMES[0])
    answer = wpage.goto(west.box.url(candidate_path))
    assert answer is not None and answer.status == 404
    invite_page = wpage.goto(west.box.url(f"/invitations/new?application={invited[0]}"))
    assert invite_page is not None and invite_page.status == 404
    assert len(problems.expect(r"status of 404")) == 5  # the five refused pages above
