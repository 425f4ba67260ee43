"""Who is calling: a bearer token (``Authorization: Bearer gct_…``) or the web session cookie, resolved
through ``engine.accounts.authenticate`` once per request. Cookie-authenticated writes must carry
``X-Requested-With`` (a header no cross-site form can send) — a CSRF guard on top of SameSite=Lax.
"""

from __future__ import annotations

from flask import g, request, session

from api.errors import ApiError
from api.http import runtime
from engine import accounts
from engine.access import Principal
from engine.errors import Unauthenticated

SESSION_KEY = "token"
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def presented_token() -> tuple[str | None, bool]:
    """(token, from_cookie): the bearer token if any, else the one in the session cookie."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if header:
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated("auth.token_invalid", "use 'Authorization: Bearer <token>'", {})
        return value.strip(), False
    token = session.get(SESSION_KEY)
    return (token, True) if isinstance(token, str) else (None, False)


def current_session() -> accounts.Session:
    """The authenticated session of this request (401 ``auth.required`` when there is none)."""
    cached = g.get("gridcase_session")
    if cached is not None:
        return cached
    token, from_cookie = presented_token()
    if token is None:
        raise Unauthenticated("auth.required", "sign in first (bearer token or session cookie)", {})
    if from_cookie and request.method in _UNSAFE and not request.headers.get("X-Requested-With"):
        raise ApiError(403, "auth.csrf", "cookie-authenticated writes need the X-Requested-With header")
    found = accounts.authenticate(token, rt=runtime())
    g.gridcase_session = found
    return found


def caller() -> Principal:
    return current_session().who


def client_ip() -> str:
    return request.remote_addr or "unknown"
