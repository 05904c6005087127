"""Browser tests (issue 6): the demo hospital over real HTTP, and Debian's headless Chromium.

Fixtures:
- `browser`: one Chromium per test module (Playwright's sync API, started here).
- `box`: a fresh demo data dir, its own redis-server and the app on a free port, per
  test: sign-in refuses a TOTP code whose 30-second step was already used, so a box
  per test keeps every test's sign-ins independent of the others'.
- `problems`: console errors, page errors and CSP violations of every page a test
  opened; the test fails on any it did not expect (`problems.expect(...)`).
- `person`: a function that opens a fresh browser profile (a person at their own PC).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.e2e.portal_driver import (
    BrowserProblems,
    DemoBox,
    PortalUser,
    launch_chromium,
    new_user,
    start_demo_box,
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Per module, not per session: Playwright's sync API keeps an asyncio loop running in
    # this thread while it is open, and later tests that call asyncio.run() would fail.
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def box() -> Iterator[DemoBox]:
    demo = start_demo_box()
    yield demo
    demo.close()


@pytest.fixture
def problems() -> Iterator[BrowserProblems]:
    found = BrowserProblems()
    yield found
    assert found.found == [], "the browser reported problems:\n" + "\n".join(found.found)


@pytest.fixture
def person(
    browser: Browser, box: DemoBox, problems: BrowserProblems
) -> Iterator[Callable[[], PortalUser]]:
    opened: list[PortalUser] = []

    def open_browser() -> PortalUser:
        user = new_user(browser, box, problems)
        opened.append(user)
        return user

    yield open_browser
    for user in opened:
        user.page.context.close()
