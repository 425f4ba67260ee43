"""The Flask app factory: ``create_app(config)`` wires a Runtime into the app and registers blueprints.

Views hold no business rules; every domain error is an ``EngineError`` mapped to HTTP in api/errors.py.
"""

from __future__ import annotations

import secrets

from flask import Flask

from api.config import Config
from api.errors import register_error_handlers
from api.health import bp as health_bp
from engine.runtime import Runtime
from engine.scheduler import Scheduler
from engine.store.db import Database, resolve_url


def create_app(config: Config | None = None, *, runtime: Runtime | None = None) -> Flask:
    config = config or Config()
    app = Flask(__name__)
    app.config["SECRET_KEY"] = config.secret_key or secrets.token_hex(32)
    app.config["TESTING"] = config.testing
    app.config["MAX_CONTENT_LENGTH"] = 2 * 1024 * 1024
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
    register_error_handlers(app)
    app.register_blueprint(health_bp)
    return app


def runtime_of(app: Flask) -> Runtime:
    rt: Runtime = app.extensions["gridcase.runtime"]
    return rt
