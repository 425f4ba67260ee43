"""Accounts: password login with throttling, bearer tokens (issue, authenticate, list, revoke).

Owns the ``api_token`` and ``login_failure`` tables. Must not import flask, api or celery.

Tokens. ``login`` issues a random token (``gct_`` + 32 random bytes, URL-safe), returns it once, and
stores only its sha256. A web session is the same thing with ``kind="session"``: the API keeps the token
in the signed session cookie, so logging out or revoking ends either. A token expires after
``TOKEN_TTL`` (bearer) or ``SESSION_TTL`` (session); ``last_used_at`` is written at most once per
``TOUCH_EVERY`` so that reading does not turn every request into a write.

Throttling. Failed logins are rows in ``login_failure`` (in the database, so every worker process sees
them). Within ``WINDOW``, ``MAX_FAILURES_PER_LOGIN`` failures for one (login, client address) or
``MAX_FAILURES_PER_CLIENT`` for one address refuse further attempts with ``auth.rate_limited`` *before*
the password is checked; a success clears the (login, address) rows. Unknown logins and wrong passwords
give the same error, ``auth.invalid_credentials``, and cost the same argon2 verification
(``orgs.verify_password`` checks against a dummy hash for unknown people).

Caching. A resolved token is remembered in-process for ``CACHE_SECONDS`` (bounded size) so that a
request costs no token lookup; revoking through this process forgets it at once, another worker process
notices within ``CACHE_SECONDS``. Expiry is still checked on every request.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, func, insert, select, update

from engine import orgs
from engine.access import Principal, principal
from engine.errors import InvalidInput, NotFound, RateLimited, Unauthenticated
from engine.runtime import Runtime
from engine.store.models import api_token, login_failure, person

__all__ = [
    "MAX_FAILURES_PER_CLIENT",
    "MAX_FAILURES_PER_LOGIN",
    "WINDOW",
    "IssuedToken",
    "Session",
    "TokenView",
    "authenticate",
    "issue_token",
    "list_tokens",
    "login",
    "revoke_token",
    "revoke_token_value",
]

WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_LOGIN = 5
MAX_FAILURES_PER_CLIENT = 30
TOKEN_TTL = timedelta(days=30)
SESSION_TTL = timedelta(hours=12)
TOUCH_EVERY = timedelta(minutes=5)
TOKEN_PREFIX = "gct_"
CACHE_SECONDS = 10.0
CACHE_SIZE = 10_000
KINDS = ("bearer", "session")


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A fresh token: ``token`` is shown this once and never stored."""

    id: int
    token: str
    person_id: str
    kind: str
    label: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class TokenView:
    id: int
    label: str
    kind: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _failures(conn: Connection, *, login_name: str, client_ip: str, since: datetime) -> tuple[int, int]:
    per_login = conn.execute(
        select(func.count())
        .select_from(login_failure)
        .where(
            login_failure.c.login == login_name,
            login_failure.c.client_ip == client_ip,
            login_failure.c.at > since,
        )
    ).scalar_one()
    per_client = conn.execute(
        select(func.count())
        .select_from(login_failure)
        .where(login_failure.c.client_ip == client_ip, login_failure.c.at > since)
    ).scalar_one()
    return int(per_login), int(per_client)


def login(
    login_name: str,
    password: str,
    *,
    rt: Runtime,
    client_ip: str,
    kind: str = "bearer",
    label: str | None = None,
) -> IssuedToken:
    """Check the password (throttled) and issue a token of ``kind`` (bearer or session)."""
    if kind not in KINDS:
        raise InvalidInput("auth.unknown_token_kind", f"unknown token kind {kind!r}", {"kind": kind})
    login_name = login_name.strip()[:64]
    client_ip = client_ip[:64]
    now = rt.now()
    with rt.db.read() as conn:
        per_login, per_client = _failures(
            conn, login_name=login_name, client_ip=client_ip, since=now - WINDOW
        )
    if per_login >= MAX_FAILURES_PER_LOGIN or per_client >= MAX_FAILURES_PER_CLIENT:
        raise RateLimited(
            "auth.rate_limited",
            "too many failed logins: wait and try again",
            {"retry_after": int(WINDOW.total_seconds())},
        )
    with rt.db.read() as conn:
        ok = orgs.verify_password(conn, login_name, password)
    with rt.db.write() as conn:
        if not ok:
            conn.execute(delete(login_failure).where(login_failure.c.at <= now - WINDOW))
            conn.execute(insert(login_failure).values(login=login_name, client_ip=client_ip, at=now))
        else:
            conn.execute(
                delete(login_failure).where(
                    login_failure.c.login == login_name, login_failure.c.client_ip == client_ip
                )
            )
            return _issue(conn, login_name, kind=kind, label=label, now=now)
    raise Unauthenticated("auth.invalid_credentials", "login or password is wrong", {})


def _issue(conn: Connection, person_id: str, *, kind: str, label: str | None, now: datetime) -> IssuedToken:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = now + (SESSION_TTL if kind == "session" else TOKEN_TTL)
    label = (label or ("web session" if kind == "session" else "api token")).strip()[:100] or kind
    inserted = conn.execute(
        insert(api_token).values(
            person_id=person_id,
            token_hash=_digest(token),
            label=label,
            kind=kind,
            created_at=now,
            expires_at=expires_at,
            last_used_at=None,
            revoked_at=None,
        )
    ).inserted_primary_key
    assert inserted is not None
    return IssuedToken(int(inserted[0]), token, person_id, kind, label, expires_at)


def issue_token(
    person_id: str, *, rt: Runtime, kind: str = "bearer", label: str | None = None
) -> IssuedToken:
    """A token for a known, active person without a password (CLI, tests, service accounts)."""
    if kind not in KINDS:
        raise InvalidInput("auth.unknown_token_kind", f"unknown token kind {kind!r}", {"kind": kind})
    with rt.db.write() as conn:
        if not orgs.get_person(conn, person_id).active:
            raise NotFound("person.not_found", f"person {person_id!r} is not active", {"id": person_id})
        return _issue(conn, person_id, kind=kind, label=label, now=rt.now())


_LOOKUP = (
    select(api_token.c.id, api_token.c.person_id, api_token.c.expires_at, api_token.c.last_used_at)
    .join(person, person.c.id == api_token.c.person_id)
    .where(person.c.active.is_(True), api_token.c.revoked_at.is_(None))
)


@dataclass(frozen=True, slots=True)
class Session:
    """An authenticated request: the token's id and the caller."""

    token_id: int
    who: Principal


class _SessionCache:
    """digest → (valid until (monotonic), session, token expiry); see "Caching" above."""

    def __init__(self) -> None:
        self._items: dict[str, tuple[float, Session, datetime | None]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> tuple[Session, datetime | None] | None:
        item = self._items.get(digest)
        if item is None or item[0] < time.monotonic():
            return None
        return item[1], item[2]

    def put(self, digest: str, found: Session, expires_at: datetime | None) -> None:
        with self._lock:
            if len(self._items) >= CACHE_SIZE:
                self._items.clear()
            self._items[digest] = (time.monotonic() + CACHE_SECONDS, found, expires_at)

    def forget(self, *, digest: str | None = None, token_id: int | None = None) -> None:
        with self._lock:
            for key, (_until, found, _expires) in list(self._items.items()):
                if key == digest or found.token_id == token_id:
                    del self._items[key]


_cache = _SessionCache()


def authenticate(token: str, *, rt: Runtime) -> Session:
    """The caller behind ``token``; ``auth.token_invalid`` when unknown, expired or revoked."""
    now = rt.now()
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        raise Unauthenticated("auth.token_invalid", "the token is not valid", {})
    digest = _digest(token)
    cached = _cache.get(digest)
    if cached is not None and (cached[1] is None or cached[1] > now):
        return cached[0]
    with rt.db.read() as conn:
        row = conn.execute(_LOOKUP.where(api_token.c.token_hash == digest)).first()
        if row is None or (row.expires_at is not None and row.expires_at <= now):
            raise Unauthenticated("auth.token_invalid", "the token is not valid", {})
        who = principal(conn, row.person_id)
    if row.last_used_at is None or now - row.last_used_at >= TOUCH_EVERY:
        with rt.db.write() as conn:
            conn.execute(update(api_token).where(api_token.c.id == row.id).values(last_used_at=now))
    found = Session(token_id=int(row.id), who=who)
    _cache.put(digest, found, row.expires_at)
    return found


def list_tokens(person_id: str, *, rt: Runtime) -> list[TokenView]:
    """The person's tokens, newest first (never the token values)."""
    with rt.db.read() as conn:
        rows = conn.execute(
            select(api_token).where(api_token.c.person_id == person_id).order_by(api_token.c.id.desc())
        ).all()
    return [
        TokenView(r.id, r.label, r.kind, r.created_at, r.expires_at, r.last_used_at, r.revoked_at)
        for r in rows
    ]


def revoke_token(person_id: str, token_id: int, *, rt: Runtime) -> None:
    """Revoke one of the person's own tokens (someone else's is ``auth.token_not_found``)."""
    mine = (api_token.c.id == token_id, api_token.c.person_id == person_id)
    with rt.db.write() as conn:
        if conn.execute(select(api_token.c.id).where(*mine)).first() is None:
            raise NotFound("auth.token_not_found", f"no token {token_id}", {"token_id": token_id})
        conn.execute(
            update(api_token).where(*mine, api_token.c.revoked_at.is_(None)).values(revoked_at=rt.now())
        )
    _cache.forget(token_id=token_id)


def revoke_token_value(token: str, *, rt: Runtime) -> None:
    """Revoke the token presented (logout); unknown tokens are ignored."""
    _cache.forget(digest=_digest(token))
    with rt.db.write() as conn:
        conn.execute(
            update(api_token)
            .where(api_token.c.token_hash == _digest(token), api_token.c.revoked_at.is_(None))
            .values(revoked_at=rt.now())
        )
