"""The portal speaks Chinese first and English on request (issue 6), with no gaps."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from flask.testing import FlaskClient

from webapp import NAV
from webapp.i18n import catalog_files

WEBAPP = Path(__file__).resolve().parents[2] / "webapp"
METHODS = [("**.py", "python"), ("**/templates/**.html", "jinja2")]


def _msgids() -> dict[str, str]:
    found: dict[str, str] = {}
    for filename, _line, message, _comments, _context in extract_from_dir(
        str(WEBAPP), METHODS, options_map={"**/templates/**.html": {}}
    ):
        for msgid in message if isinstance(message, tuple) else (message,):
            if msgid:
                found.setdefault(msgid, filename)
    return found


def _english() -> dict[str, str]:
    merged: dict[str, str] = {}
    for path in catalog_files("en"):
        with path.open("rb") as po:
            for entry in read_po(po):
                if entry.id:
                    ids = entry.id if isinstance(entry.id, tuple) else (entry.id,)
                    strs = entry.string if isinstance(entry.string, tuple) else (entry.string,)
                    merged.update(zip(ids, strs, strict=False))
    return merged


def test_every_portal_string_has_english() -> None:
    msgids, english = _msgids(), _english()
    assert "候选人" in msgids  # the extraction sees the templates
    missing = {m: f for m, f in msgids.items() if not english.get(m)}
    assert not missing, f"no English for: {missing}"


def test_nav_labels_are_translated() -> None:
    english = _english()
    assert all(english.get(label) for _endpoint, label in NAV)


def test_chinese_by_default_english_on_request(login_as: Callable[[str], FlaskClient]) -> None:
    client = login_as("hradmin")
    page = client.get("/portal/candidates").get_data(as_text=True)
    assert 'lang="zh-CN"' in page and ">English</a>" in page
    page = client.get("/portal/candidates?lang=en").get_data(as_text=True)
    assert 'lang="en"' in page and ">Candidates</a>" in page
    page = client.get("/portal/candidates").get_data(as_text=True)  # kept for the session
    assert 'lang="en"' in page
