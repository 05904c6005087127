"""The web app (Flask application factory, flaskr's pattern): portal, kiosk, audit, API.

`create_app()` is what gunicorn serves (`webapp:create_app()`): it loads the
settings (config file, secrets file, ENCLAVE_* environment), opens the one
store of this process and registers the blueprints.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from appliance.settings import Settings, load_settings


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        MAX_CONTENT_LENGTH=64 << 20,
    )
    if config:
        app.config.update(config)
    if not isinstance(app.config.get("SETTINGS"), Settings):
        app.config["SETTINGS"] = load_settings()
    if not app.testing:
        # The served app (gunicorn): no egress, JSON logs (issue 9). Not under TESTING: an
        # audit hook is permanent, and the test process is not the box.
        from appliance import egress, logs

        egress.install(app.config["SETTINGS"], "web")
        logs.configure("web")

    from webapp import i18n
    from webapp.extensions import appliance_store, security_headers

    appliance_store.init_app(app)
    app.after_request(security_headers)
    i18n.init_app(app)

    from webapp import (
        api,
        audit_console,
        auth,
        dashboard,
        health,
        interview,
        invitations,
        jobs,
        pipeline,
        portal,
        privacy,
    )
    from webapp.errors import register_error_handlers

    app.register_blueprint(auth.bp)  # also: CSRF check on every unsafe request, 401 handling
    app.register_blueprint(health.bp)
    app.register_blueprint(portal.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(jobs.bp)
    app.register_blueprint(pipeline.bp)
    app.register_blueprint(invitations.bp)
    app.register_blueprint(invitations.candidate_bp)
    app.register_blueprint(interview.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(audit_console.bp)
    app.register_blueprint(privacy.bp)
    app.jinja_env.globals["nav_items"] = nav_items
    register_error_handlers(app)
    return app


def N_(msgid: str) -> str:
    """Marks a msgid for extraction; the template translates it when it renders."""
    return msgid


# The portal's main navigation (issue 6): (endpoint, Chinese label as msgid). An area
# shows only once its blueprint has that endpoint.
NAV = (
    ("dashboard.index", N_("工作台")),
    ("jobs.index", N_("职位")),
    ("portal.candidates", N_("候选人")),
    ("invitations.outbox", N_("邀请与消息")),
)


def nav_items() -> list[tuple[str, str]]:
    from flask import current_app

    return [(e, label) for e, label in NAV if e in current_app.view_functions]


def create_internal_app(config: dict[str, Any] | None = None) -> Flask:
    """The internal worker API alone, for the mTLS listener (`webapp.internal`): worker
    hosts reach no portal page, and browsers reach no internal endpoint."""
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=64 << 20, **(config or {}))
    if not isinstance(app.config.get("SETTINGS"), Settings):
        app.config["SETTINGS"] = load_settings()
    if not app.testing:
        # The served app (gunicorn): no egress, JSON logs (issue 9). Not under TESTING: an
        # audit hook is permanent, and the test process is not the box.
        from appliance import egress, logs

        egress.install(app.config["SETTINGS"], "web")
        logs.configure("web")

    from webapp import internal
    from webapp.extensions import appliance_store

    appliance_store.init_app(app)
    app.register_blueprint(internal.bp)
    return app
