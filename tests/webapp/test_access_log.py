"""The access log never holds a candidate's link token (webapp/access_log.py).

A real gunicorn process with the box's logger class serves a request for a candidate
link (with the link as Referer too, as a browser without our Referrer-Policy would
send it); the token is nowhere in the access log, the redacted path is.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from appliance.supervisor import child_specs
from tests.conftest import settings_for
from webapp.access_log import LOGGER_CLASS, redact

REPO = Path(__file__).resolve().parents[2]
TOKEN = "AbL1ylSRibcu6C-LCyspcscBAAAAAGsL0VKPB8LV4P"  # noqa: S105 (made up for the test)
HELLO = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_gunicorn_logs_the_candidate_link_without_its_token(tmp_path: Path) -> None:
    (tmp_path / "hello_app.py").write_text(HELLO)
    log, port = tmp_path / "access.log", _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "gunicorn", "--no-control-socket", "--bind", f"127.0.0.1:{port}"]
    cmd += ["--access-logfile", str(log), "--logger-class", LOGGER_CLASS]
    proc = subprocess.Popen([*cmd, "--chdir", str(tmp_path), "hello_app:app"], env=env)
    try:
        url = f"http://127.0.0.1:{port}/c/{TOKEN}/start?lang=en"
        request = urllib.request.Request(url, headers={"Referer": f"http://box/c/{TOKEN}"})
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                    assert response.read() == b"ok"
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    written = log.read_text()
    assert "GET /c/<token>/start?lang=en" in written, written
    assert TOKEN not in written and "http://box/c/<token>" in written, written


def test_the_box_starts_gunicorn_with_that_logger(short_tmp: Path) -> None:
    settings = settings_for(short_tmp / "data")
    web = dict(child_specs(settings, short_tmp / "c.pem", short_tmp / "c.key"))["web"]
    assert web[web.index("--logger-class") + 1] == LOGGER_CLASS
    unit = REPO / "ansible/roles/appliance/templates/enclave-web.service.j2"
    assert f"--logger-class {LOGGER_CLASS}" in unit.read_text()


def test_redact_touches_candidate_links_only() -> None:
    assert redact(f"/c/{TOKEN}") == "/c/<token>"
    assert (
        redact("/portal/candidates/12?purpose=screening")
        == "/portal/candidates/12?purpose=screening"
    )
    assert redact("/static/css/c/x.css") == "/static/css/c/x.css"
    assert redact(f'GET /c/{TOKEN}/start HTTP/1.1 "https://box/c/{TOKEN}"') == (
        'GET /c/<token>/start HTTP/1.1 "https://box/c/<token>"'
    )
