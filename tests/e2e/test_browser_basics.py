"""The portal in a real headless Chromium: sign-in with TOTP, languages, CSP, department scope.

Issue 6: Chinese first with an English switch, strict CSP (no inline script or style),
and an HR user of one campus never sees another campus's candidates (out-of-scope
rows answer 404, never 403: the answer must not tell that the row exists).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import expect

from tests.e2e.portal_driver import BrowserProblems, DemoBox, PortalUser

EAST_CANDIDATE = "吴子涵"  # appliance/demo.py: an EAST campus candidate
WEST_CANDIDATE = "Emily Carter"  # and a WEST campus one


def test_hr_signs_in_with_totp_and_switches_the_portal_to_english(
    person: Callable[[], PortalUser], problems: BrowserProblems
) -> None:
    """Password + authenticator code in the real form; the Secure session cookie is kept
    on http://localhost; the portal is Chinese, and English after one click."""
    hr = person()
    hr.sign_in("hr.east")
    page = hr.page
    expect(page).not_to_have_url(hr.box.url("/auth/login"))
    expect(page.locator("form.signout")).to_be_visible()

    cookies = page.context.cookies()
    session_cookie = next(c for c in cookies if c["name"] == "session")
    assert session_cookie["secure"] and session_cookie["httpOnly"]
    assert session_cookie["sameSite"] == "Strict"

    nav = page.locator("nav.portal-nav")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(nav).to_contain_text("候选人")

    hr.click(page.locator(".lang-switch a", has_text="English"))
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(nav).to_contain_text("Candidates")
    expect(nav).not_to_contain_text("候选人")

    hr.click(nav.get_by_role("link", name="Candidates"))  # the choice stays for the session
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("table.records")).to_contain_text(EAST_CANDIDATE)
    assert problems.found == []


def test_every_page_names_an_icon_the_box_serves(person: Callable[[], PortalUser]) -> None:
    """A page that names no icon makes Chromium ask for /favicon.ico, which the box does not
    have: a console error on every hospital PC. base.html must name one (a `data:` URL or
    a file under static/), and it must load."""
    hr = person()
    hr.open("/auth/login")
    hr.sign_in("hr.east")
    for path in ("/auth/login", "/portal/candidates"):
        hr.open(path)
        icon = hr.page.locator("head link[rel~=icon]")
        expect(icon).to_have_count(1)
        href = str(icon.get_attribute("href"))
        if not href.startswith("data:"):
            assert hr.page.request.get(hr.box.url(href)).status == 200, href


def test_a_wrong_one_time_code_is_refused(person: Callable[[], PortalUser], box: DemoBox) -> None:
    """The right password with a wrong code signs nobody in, and says so in both languages."""
    hr = person()
    hr.open("/auth/login")
    page = hr.page
    right = box.totp_code("hr.east")
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    hr.fill(page.locator("#username"), "hr.east")
    hr.fill(page.locator("#password"), "Demo-hr.east-2026")
    hr.fill(page.locator("#totp"), wrong)
    hr.click(page.locator("form[action$='/auth/login'] button[type=submit]"))
    expect(page.locator("[role=alert]")).to_be_visible()
    expect(page.locator("form.signout")).to_have_count(0)
    hr.open("/portal/candidates")
    expect(page).to_have_url(re.compile(r"/auth/login\?next=/portal/candidates$"))
    # The refused sign-in answers 401, which Chromium reports as a failed resource.
    assert hr.problems.expect(r"status of 401")


def test_the_problem_watch_sees_a_csp_violation(
    person: Callable[[], PortalUser], problems: BrowserProblems
) -> None:
    """The guard every browser test relies on: an inline script is blocked by the CSP, and
    the block is reported (so a page that needs one fails its test)."""
    hr = person()
    hr.open("/auth/login")
    hr.page.evaluate(
        """() => {
        const s = document.createElement("script");
        s.textContent = "document.title = 'inline ran'";
        document.body.appendChild(s);
        const d = document.createElement("div");
        d.setAttribute("style", "color: red");
        document.body.appendChild(d);
    }"""
    )
    hr.page.wait_for_timeout(200)  # the violation events are dispatched asynchronously
    assert hr.page.title() != "inline ran"
    violations = problems.expect(r"^CSP: ")
    assert any("script-src" in v for v in violations), violations
    assert any("style-src" in v for v in violations), violations
    # Chromium also prints its own console line for each block.
    assert len(problems.expect(r"violates the following Content Security Policy")) == 2


def test_hr_of_one_campus_cannot_see_another_campus_candidate(
    person: Callable[[], PortalUser], problems: BrowserProblems
) -> None:
    """hr.east lists and opens an EAST candidate; hr.west does not list it and its direct
    URL answers 404 (not 403), while hr.west still sees its own campus's candidate."""
    east = person()
    east.sign_in("hr.east")
    east.open("/portal/candidates")
    rows = east.page.locator("table.records tbody tr")
    expect(rows.filter(has_text=EAST_CANDIDATE)).to_have_count(1)
    expect(rows.filter(has_text=WEST_CANDIDATE)).to_have_count(0)
    link = rows.filter(has_text=EAST_CANDIDATE).locator("a").first
    candidate_path = str(link.get_attribute("href")).split("?")[0]
    east.click(link)
    expect(east.page.locator("main")).to_contain_text(EAST_CANDIDATE)

    west = person()
    west.sign_in("hr.west")
    west.open("/portal/candidates")
    rows = west.page.locator("table.records tbody tr")
    expect(rows.filter(has_text=WEST_CANDIDATE)).to_have_count(1)
    expect(rows.filter(has_text=EAST_CANDIDATE)).to_have_count(0)

    answer = west.page.goto(west.box.url(candidate_path))
    assert answer is not None and answer.status == 404
    expect(west.page.locator("main")).not_to_contain_text(EAST_CANDIDATE)
    assert problems.expect(r"status of 404")  # the refused page, reported by Chromium
