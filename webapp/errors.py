"""Error pages: JSON for API clients, HTML for browsers (microblog's wants_json_response)."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException


def wants_json_response() -> bool:
    accept = request.accept_mimetypes
    return request.path.startswith("/api/") or accept["application/json"] >= accept["text/html"]


def _handle(exc: HTTPException) -> Any:
    code = exc.code or 500
    if wants_json_response():
        return jsonify({"error": exc.name, "message": exc.description}), code
    return render_template(
        "error.html", code=code, name=exc.name, description=exc.description
    ), code


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(HTTPException, _handle)
