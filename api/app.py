"""The Flask app factory: ``create_app(config)`` wires a Runtime into the app and registers blueprints.

The JSON API is a flask-smorest ``Api``: marshmallow schemas for every request and response, the
OpenAPI 3 document at ``/api/openapi.json`` and Swagger UI at ``/api/docs`` (assets served locally).
Views hold no business rules; every domain error is an ``EngineError`` mapped to HTTP in api/errors.py.
"""

from __future__ import annotations

import secrets

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_smorest import Api
from werkzeug.middleware.proxy_fix import ProxyFix

from api import http, metrics
from api.blueprints import attachments, auth, cases, notifications, org, sla, specs, tasks
from api.config import Config
from api.docs import ASSETS_URL
from api.docs import bp as docs_bp
from api.errors import register_error_handlers
from api.health import bp as health_bp
from api.jsonio import JsonProvider
from api.schemas.common import ErrorSchema
from engine.runtime import Runtime
from engine.scheduler import Scheduler
from engine.store.db import Database, resolve_url

API_DESCRIPTION = """gridcase JSON API: intake from every channel, case lists scoped by the caller's
organisation, work lists and task actions (claim, complete, reassign, return, extension request and
decision), SLA clocks (suspend, resume, remind, supervise, extend) and supervision lists,
notifications, specs, organisation, attachments.

Authenticate with `POST /api/auth/login`, then send `Authorization: Bearer <token>`. Every error has the
shape `{"code", "message", "details"}` with a stable dotted `code`. Case and task responses carry
`ETag: "<case version>"`; send it back as `If-Match` on writes: a stale version is 409
`case.stale_version`."""


class GridcaseApi(Api):
    ERROR_SCHEMA = ErrorSchema

    def _register_error_handlers(self) -> None:
        """Ours are registered by ``register_error_handlers`` (one error shape for everything)."""


def _api_config(app: Flask) -> None:
    app.config.update(
        API_TITLE="gridcase",
        API_VERSION="1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=ASSETS_URL,
        API_SPEC_OPTIONS={
            "info": {"description": API_DESCRIPTION},
            "components": {
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer"},
                    "session": {"type": "apiKey", "in": "cookie", "name": "gridcase_session"},
                }
            },
            "security": [{"bearer": []}, {"session": []}],
        },
    )


class _CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, skipped for requests that carry no session cookie (API clients with
    bearer tokens): no signer is built for them (~50 µs a request); an empty session is still there to
    write into (login sets the cookie as before)."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)


def create_app(config: Config | None = None, *, runtime: Runtime | None = None) -> Flask:
    config = config or Config()
    app = Flask(__name__)
    app.json = JsonProvider(app)
    app.session_interface = _CookieSessions()
    app.config["SECRET_KEY"] = config.secret_key or secrets.token_hex(32)
    app.config["TESTING"] = config.testing
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.config.update(
        SESSION_COOKIE_NAME="gridcase_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.secure_cookies,
    )
    if config.trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=config.trusted_proxies)  # type: ignore[method-assign]
    if runtime is None:
        db = Database(resolve_url(config.database_url))
        db.migrate()
        runtime = Runtime(db=db)
    app.extensions["gridcase.runtime"] = runtime
    app.extensions["gridcase.config"] = config
    if config.start_scheduler:
        scheduler = Scheduler(runtime)
        runtime.wake_listeners.append(scheduler.poke)
        scheduler.start()
        app.extensions["gridcase.scheduler"] = scheduler
    metrics.init_app(app)
    http.init_app(app)
    _api_config(app)
    api = GridcaseApi(app)
    api.register_converter(http.IdConverter, http.id_schema)
    for module in (auth, cases, sla, tasks, notifications, attachments, specs, org):
        api.register_blueprint(module.blp)
    register_error_handlers(app)
    app.register_blueprint(health_bp)
    app.register_blueprint(docs_bp)
    return app


def runtime_of(app: Flask) -> Runtime:
    rt: Runtime = app.extensions["gridcase.runtime"]
    return rt
