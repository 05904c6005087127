"""The portal's front page. Sign-in and every personal-data page come with issue #3 onwards."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

bp = Blueprint("portal", __name__)


@bp.get("/")
def index() -> Any:
    return render_template("index.html")
