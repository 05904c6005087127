"""Portal languages (issue 6): Chinese first, English on request, through Flask-Babel.

- The msgids are the Chinese text itself (`{{ _("候选人") }}`), so Chinese needs no
  catalog and can never show a missing-translation placeholder.
- English comes from one plain `.po` catalog per area of the portal,
  `webapp/translations/<area>/en/LC_MESSAGES/messages.po`, each owned by the people who
  write that area. They are read and merged in memory when the first English page of a
  process is rendered: no compile step, and no `.mo` file that could drift from its
  `.po`. A msgid without English falls back to the Chinese text, and
  `tests/webapp/test_i18n.py` fails the build when that happens.
- The language is chosen by `?lang=zh|en` (kept in the session from then on), else the
  session, else the box's `language` setting (zh-CN unless IT changed it). The browser's
  Accept-Language is deliberately ignored: on shared hospital PCs it says what the PC
  was set up with, not who sits at it.
"""

from __future__ import annotations

import io
from functools import cached_property
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from flask import Flask, current_app, request, session
from flask_babel import Babel, Domain, get_locale

TRANSLATIONS = Path(__file__).parent / "translations"
LANGUAGES = ("zh", "en")


def catalog_files(language: str = "en") -> list[Path]:
    """Every area's catalog for `language`, in a stable order."""
    return sorted(TRANSLATIONS.glob(f"*/{language}/LC_MESSAGES/messages.po"))


def _merged(language: str) -> NullTranslations:
    merged = Translations()
    for path in catalog_files(language):
        with path.open("rb") as po:
            catalog = read_po(po, locale=language)
        mo = io.BytesIO()
        write_mo(mo, catalog)
        mo.seek(0)
        merged.merge(Translations(fp=mo))
    return merged


class MergedDomain(Domain):
    """The default domain, read from every area's `.po` (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._merged: dict[str, NullTranslations] = {}

    def get_translations(self) -> NullTranslations:
        language = get_locale().language if get_locale() else "zh"
        if language == "zh":
            return NullTranslations()  # the msgids are the Chinese text
        if language not in self._merged:
            self._merged[language] = _merged(language)
        return self._merged[language]


class PortalBabel(Babel):
    @cached_property
    def domain_instance(self) -> Domain:
        return MergedDomain()


def select_language() -> str:
    chosen = request.args.get("lang")
    if chosen in LANGUAGES:
        session["lang"] = chosen
        return chosen
    if session.get("lang") in LANGUAGES:
        return str(session["lang"])
    return "en" if current_app.config["SETTINGS"].language == "en" else "zh"


babel = PortalBabel()


def init_app(app: Flask) -> None:
    babel.init_app(app, default_locale="zh", locale_selector=select_language)
    app.jinja_env.globals["current_language"] = current_language


def current_language() -> str:
    locale: Any = get_locale()
    return "en" if locale is not None and locale.language == "en" else "zh"
