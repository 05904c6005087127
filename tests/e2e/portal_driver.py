"""Drives the HR portal in a real headless Chromium, for the browser tests and the bench.

Issue 6, "Must show": an HR user of one department signs in with TOTP, creates a job
with a scoring template, imports 10 candidates from an Excel file and invites all 10;
another department's HR cannot see them. The same driver serves `tests/e2e/` (which
asserts) and `bench/portal_flow_bench.py` (which counts clicks and times the user's
part), so the bench measures exactly the flow the test proves.

Pieces:
- `DemoBox`: a demo data dir (real SQLCipher store, keyring), its own redis-server on
  the data dir's unix socket, and `create_app` served by werkzeug over real HTTP on
  127.0.0.1, reached by the browser as http://localhost:PORT. The session cookie is
  `Secure`: Chromium treats http://localhost as a secure context and keeps such a
  cookie (checked by test_browser_basics.py's sign-in), so no TLS is needed here.
- `launch_chromium`: Debian's /usr/bin/chromium through Playwright (never
  `playwright install`: the box and CI have no egress).
- `BrowserProblems`: every console error, uncaught page error and CSP violation of a
  browser context; the tests fail on any (strict CSP, issue 6 "Build" 1).
- `PortalUser`: one person at the browser; every click goes through it, so the bench
  can count them.
"""

from __future__ import annotations

import io
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyotp
from aiosmtpd.controller import Controller
from flask import Flask
from playwright.sync_api import Browser, BrowserContext, Locator, Page, Playwright
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from werkzeug.serving import BaseWSGIServer, make_server

from appliance.datadir import init_data_dir
from appliance.demo import demo_logins, demo_password
from appliance.queue import connect, redis_config, socket_path
from appliance.settings import Settings, load_settings
from compliance.signing import stop_agent

PASSPHRASE = "E2E-PASS-PHRASE-0001"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
VIEWPORT = {"width": 1366, "height": 768}  # the hospital PC the portal must fit (issue 6)
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


# --- the box: data dir, redis, HTTP server ------------------------------------------------


def settings_for(data_dir: Path, smtp_port: int) -> Settings:
    """Settings that ignore the machine's /etc/enclave and environment (as tests/conftest),
    with the hospital's SMTP relay at `smtp_port` (the invitation form offers e-mail only
    when a relay is configured)."""
    environ = {
        "ENCLAVE_SMTP__HOST": "127.0.0.1",
        "ENCLAVE_SMTP__PORT": str(smtp_port),
        "ENCLAVE_SMTP__STARTTLS": "false",
    }
    return load_settings(
        config=None, secrets=Path("/nonexistent/secrets.toml"), environ=environ, data_dir=data_dir
    )


class _Mailbox:
    """aiosmtpd handler: the relay accepts every message (nothing here sends them: the
    outbox worker does, and tests/workers covers it)."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(envelope.content)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_smtp() -> Controller:
    # aiosmtpd's Controller connects to its own port once started: it needs a real number.
    relay = Controller(_Mailbox(), hostname="127.0.0.1", port=_free_port())
    relay.start()
    return relay


def _start_redis(settings: Settings, keys: Any) -> subprocess.Popen[bytes]:
    data_dir = settings.data_dir
    conf = data_dir / "redis" / "redis.conf"
    conf.write_text(redis_config(data_dir, keys))
    conf.chmod(0o600)
    proc = subprocess.Popen(
        [REDIS_SERVER, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    client: Redis = connect(data_dir, keys)
    try:
        _wait_for_redis(client, proc, socket_path(data_dir))
    except BaseException:
        _stop_process(proc)
        raise
    finally:
        client.close()
    return proc


def _wait_for_redis(client: Redis, proc: subprocess.Popen[bytes], sock: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}; see its log")
        if sock.exists():
            try:
                client.ping()
                return
            except RedisConnectionError:
                pass
        time.sleep(0.05)
    raise RuntimeError(f"redis-server did not answer on {sock} within 10 s")


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class DemoBox:
    """The demo hospital served over real HTTP; `close()` stops and removes everything."""

    root: Path
    settings: Settings
    app: Flask
    redis_proc: subprocess.Popen[bytes]
    server: BaseWSGIServer
    thread: threading.Thread
    smtp: Controller
    totp_secrets: dict[str, str]
    _last_step: dict[str, int] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        # `localhost`, not 127.0.0.1: Chromium keeps the Secure session cookie only on a
        # secure context, and http://localhost is one; http://127.0.0.1 is one too in
        # Chromium, but the name is what a person types.
        return f"http://localhost:{self.server.server_port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def totp_code(self, username: str) -> str:
        """The account's current TOTP code, as the authenticator app on a phone shows it.

        Sign-in refuses a code whose 30-second step was already used (replay guard,
        compliance.accounts._claim_totp_step): a second sign-in of the same account in
        the same step waits for the next code, as a person would.
        """
        totp = pyotp.TOTP(self.totp_secrets[username])
        step = totp.timecode(datetime.now(UTC))
        while step <= self._last_step.get(username, -1):
            time.sleep(0.5)
            step = totp.timecode(datetime.now(UTC))
        self._last_step[username] = step
        return totp.generate_otp(step)

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)
        self.server.server_close()
        self.app.extensions["enclave.redis"].close()
        self.app.extensions["enclave.store"].close()
        _stop_process(self.redis_proc)
        self.smtp.stop()
        stop_agent(self.settings.data_dir / "gnupg")
        shutil.rmtree(self.root, ignore_errors=True)


def start_demo_box() -> DemoBox:
    """A fresh demo data dir, its redis, an SMTP relay and the app on a free port (about
    4 s on an idle 2-core machine). Whatever started is stopped again if a later part fails."""
    from webapp import create_app

    # A short path: the redis unix socket must fit in ~107 bytes.
    root = Path(tempfile.mkdtemp(prefix="ence2e"))
    smtp = _start_smtp()
    redis_proc: subprocess.Popen[bytes] | None = None
    try:
        settings = settings_for(root / "data", smtp.port)
        store = init_data_dir(settings, PASSPHRASE, demo=True).store
        try:
            secrets = {username: secret for _, username, _, secret in demo_logins(store)}
            redis_proc = _start_redis(settings, store.keys)
        finally:
            store.close()
        app = create_app({"SETTINGS": settings, "TESTING": True})
        server = make_server("127.0.0.1", 0, app, threaded=True)
    except BaseException:
        if redis_proc is not None:
            _stop_process(redis_proc)
        smtp.stop()
        stop_agent(root / "data" / "gnupg")
        shutil.rmtree(root, ignore_errors=True)
        raise
    thread = threading.Thread(target=server.serve_forever, name="e2e-http", daemon=True)
    thread.start()
    return DemoBox(root, settings, app, redis_proc, server, thread, smtp, secrets)


@contextmanager
def demo_box() -> Iterator[DemoBox]:
    box = start_demo_box()
    try:
        yield box
    finally:
        box.close()


# --- the browser ---------------------------------------------------------------------------


def launch_chromium(playwright: Playwright) -> Browser:
    """Debian's Chromium, headless; Playwright's own download is never used."""
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    return playwright.chromium.launch(
        executable_path=executable, headless=True, args=list(CHROMIUM_ARGS)
    )


# Runs before any page script. Registering a listener is not inline script: the CSP
# does not apply to what the browser's automation injects.
_CSP_WATCH = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.enclaveCspViolation(
    `${e.effectiveDirective} blocked ${e.blockedURI || "(inline)"} at ` +
    `${e.sourceFile || e.documentURI}:${e.lineNumber}`);
});
"""


# Chromium asks every site for /favicon.ico unless the page names an icon. Its 404 is
# reported by test_browser_basics.py::test_every_page_names_an_icon_the_box_serves, instead
# of failing every browser test.
FAVICON_MISS = re.compile(r"status of 404 .*\(http://[^/]+/favicon\.ico\)$")


@dataclass
class BrowserProblems:
    """What went wrong in the browser: console errors, page errors, CSP violations."""

    found: list[str] = field(default_factory=list)
    favicon_misses: int = 0

    def watch(self, context: BrowserContext) -> None:
        context.expose_binding(
            "enclaveCspViolation", lambda _source, text: self.found.append(f"CSP: {text}")
        )
        context.add_init_script(_CSP_WATCH)
        context.on("console", self._console)
        context.on("weberror", lambda error: self.found.append(f"page error: {error.error}"))

    def _console(self, message: Any) -> None:
        if message.type == "error":
            where = message.location.get("url", "") if message.location else ""
            text = f"console error: {message.text} ({where})"
            if FAVICON_MISS.search(text):
                self.favicon_misses += 1
            else:
                self.found.append(text)

    def expect(self, pattern: str) -> list[str]:
        """Take out the problems a step caused on purpose (e.g. the 404 of a refused page);
        returns them, so the caller can check that they happened."""
        taken = [p for p in self.found if re.search(pattern, p)]
        self.found[:] = [p for p in self.found if p not in taken]
        return taken


@dataclass
class PortalUser:
    """One person at the browser. Every click goes through `click`, so it is counted."""

    box: DemoBox
    page: Page
    problems: BrowserProblems
    clicks: int = 0
    fields_filled: int = 0

    def open(self, path: str) -> None:
        """Typing an address or following a bookmark: not a click."""
        self.page.goto(self.box.url(path))

    def click(self, target: Locator) -> None:
        target.click()
        self.clicks += 1

    def check(self, target: Locator) -> None:
        target.check()
        self.clicks += 1

    def select(self, target: Locator, value: str | None = None, label: str | None = None) -> None:
        if label is not None:
            target.select_option(label=label)
        else:
            target.select_option(value)
        self.clicks += 1

    def fill(self, target: Locator, text: str) -> None:
        target.fill(text)
        self.fields_filled += 1

    def upload_bytes(self, target: Locator, name: str, mime: str, content: bytes) -> None:
        """Choosing a file in the file dialog (one click); the bytes never touch the disk."""
        target.set_input_files({"name": name, "mimeType": mime, "buffer": content})
        self.clicks += 1

    def sign_in(self, username: str) -> None:
        """Username, password and the authenticator's 6-digit code, in the real form."""
        self.open("/auth/login")
        form = self.page.locator("form[action$='/auth/login']")
        self.fill(form.locator("#username"), username)
        self.fill(form.locator("#password"), demo_password(username))
        self.fill(form.locator("#totp"), self.box.totp_code(username))
        self.click(form.locator("button[type=submit]"))
        self.page.wait_for_load_state()


def new_user(browser: Browser, box: DemoBox, problems: BrowserProblems) -> PortalUser:
    """A fresh browser profile (no cookies) at a 1366x768 screen, watched for problems."""
    context = browser.new_context(viewport=VIEWPORT, base_url=box.base_url)  # type: ignore[arg-type]
    problems.watch(context)
    return PortalUser(box, context.new_page(), problems)


# --- the flow of issue 6's "Must show" -------------------------------------------------------

# Ten invented applicants: realistic names, 1380013xxxx phones, e-mails (no real person).
APPLICANTS = (
    ("王芳", "13800130001", "wangfang@example.cn"),
    ("李娜", "13800130002", "lina@example.cn"),
    ("张伟", "13800130003", "zhangwei@example.com"),
    ("刘洋", "13800130004", "liuyang@example.cn"),
    ("陈静", "13800130005", "chenjing@example.com"),
    ("杨帆", "13800130006", "yangfan@example.cn"),
    ("赵磊", "13800130007", "zhaolei@example.com"),
    ("黄敏", "13800130008", "huangmin@example.cn"),
    ("周婷", "13800130009", "zhouting@example.com"),
    ("吴浩然", "13800130010", "wuhaoran@example.cn"),
)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def applicants_xlsx(rows: Sequence[tuple[str, str, str]] = APPLICANTS) -> bytes:
    """The list as HR gets it from a job fair: an .xlsx with a header row. Built in memory
    and handed to the browser's file field as bytes: invented, but still no personal data
    in a temp file (issue 6 conventions)."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "应聘人员"
    sheet.append(["姓名", "手机", "邮箱", "来源"])
    for name, phone, email in rows:
        sheet.append([name, phone, email, "校园招聘会"])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


@dataclass(frozen=True)
class NewJob:
    """What HR types into the job form."""

    title: str = "主治医师（心内科）"
    department: str = "心内科"
    description: str = "负责心内科病房及门诊诊疗工作，参与胸痛中心值班。"
    education: str = "硕士"
    licences: str = "执业医师资格证、医师执业证书"
    professional_title: str = "主治医师"
    years: str = "5"
    keywords: str = "胸痛中心、冠脉介入、心电图"


def job_id_of(page: Page) -> int:
    found = re.search(r"/jobs/(\d+)(?:$|[/?#])", page.url)
    assert found, f"not on a job's page: {page.url}"
    return int(found.group(1))


def create_job(user: PortalUser, job: NewJob = NewJob()) -> int:
    """Jobs > New job: the form, with the default five-dimension scoring template
    (沟通能力, 团队协作, 专业知识, 应变能力, 语言逻辑) and three suggested questions."""
    page = user.page
    user.click(page.locator("nav.portal-nav a[href='/jobs']"))
    user.click(page.locator("nav.jobs-subnav a[href='/jobs/new']"))
    form = page.locator("form.job-form")
    user.fill(form.locator("[name=title]"), job.title)
    user.select(form.locator("select[name=org_unit_id]"), label=job.department)
    user.select(form.locator("select[name=status]"), "open")
    user.fill(form.locator("[name=description]"), job.description)
    user.fill(form.locator("[name=education]"), job.education)
    user.fill(form.locator("[name=licences]"), job.licences)
    user.fill(form.locator("[name=professional_title]"), job.professional_title)
    user.fill(form.locator("[name=years]"), job.years)
    user.fill(form.locator("[name=keywords]"), job.keywords)
    user.select(form.locator("select[name=template]"), "default")
    user.click(form.locator("button[name=action][value=save]"))
    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    return job_id_of(page)


def import_applicants(user: PortalUser, workbook: bytes, filename: str = "应聘名单.xlsx") -> None:
    """From the job's page: Import candidates, choose the file, check and import."""
    page = user.page
    user.click(page.locator("p.job-links a[href$='/import']"))
    form = page.locator("form.import-form")
    user.upload_bytes(form.locator("input[name=file]"), filename, XLSX, workbook)
    user.click(form.locator("button[type=submit]"))
    page.locator("p.done[role=status], [role=alert]").first.wait_for()


def open_board_after_import(user: PortalUser) -> None:
    user.click(user.page.locator("p.done[role=status] a"))
    user.page.wait_for_url(re.compile(r"/jobs/\d+/board"))


def applied_cards(page: Page) -> Locator:
    return page.locator("section.board-column[data-stage=applied] li.card")


def invite_all_applied(user: PortalUser) -> list[int]:
    """On the board: tick the applied column's "select all" box, Invite, and send with
    the form's defaults (the window from tomorrow, e-mail). Returns the application ids
    invited, after checking the one tick selected every card of the column."""
    page = user.page
    boxes = applied_cards(page).locator("input[type=checkbox][name=application]")
    ids = [int(str(v)) for v in boxes.evaluate_all("els => els.map(e => e.value)")]
    user.check(page.get_by_test_id("select-applied"))
    assert boxes.evaluate_all("els => els.every(e => e.checked)"), "select-all missed a card"
    user.click(page.locator("fieldset.bulk button[formaction*='/board/invite']"))
    page.wait_for_url(re.compile(r"/invitations/new\?"))
    form = page.locator("form.inv-form")
    user.click(form.locator("button.inv-send"))
    page.wait_for_url(re.compile(r"/invitations(\?|$)"))
    return ids


def outbox_rows(page: Page) -> Locator:
    return page.locator("table.inv-table tbody tr[class^='inv-']")


@dataclass
class FlowOutcome:
    """What the user did: the job, the applications invited, and what it cost them."""

    job_id: int
    application_ids: list[int]
    clicks: int
    fields_filled: int
    steps: dict[str, float]
    """Seconds per step, in order; their sum is the user's part of the flow."""

    @property
    def seconds(self) -> float:
        return sum(self.steps.values())


def hr_flow(user: PortalUser, username: str = "hr.east") -> FlowOutcome:
    """Issue 6's flow, as one HR user does it: sign in with TOTP, create a job with a
    scoring template, import 10 candidates from Excel, invite all 10, see the outbox.
    Each step ends when its page has answered (the next page, or the import's verdict)."""
    steps: dict[str, float] = {}
    found: dict[str, Any] = {}

    def step(name: str, action: Callable[[], Any]) -> None:
        start = time.perf_counter()
        found[name] = action()
        steps[name] = time.perf_counter() - start

    step("sign in (password + TOTP)", lambda: user.sign_in(username))
    step("create job with scoring template", lambda: create_job(user))
    workbook = applicants_xlsx()  # the file HR already has: not part of their time
    step("import 10 candidates (.xlsx)", lambda: import_applicants(user, workbook))
    step("open the pipeline board", lambda: open_board_after_import(user))
    step("tick all, invite, send", lambda: invite_all_applied(user))
    step("outbox lists the messages", lambda: outbox_rows(user.page).first.wait_for())
    return FlowOutcome(
        found["create job with scoring template"],
        found["tick all, invite, send"],
        user.clicks,
        user.fields_filled,
        steps,
    )
