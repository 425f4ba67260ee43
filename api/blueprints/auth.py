"""/api/auth and /api/me: login (bearer token or web session), logout, the caller's tokens, profile."""

from __future__ import annotations

from flask import session

from api.auth import SESSION_KEY, caller, client_ip, current_session, presented_token
from api.blueprints.base import Blueprint
from api.http import runtime
from api.schemas.auth import LoginIn, LoginOut, MeOut, TokenOut
from engine import accounts, directory

blp = Blueprint("auth", __name__, url_prefix="/api", description="Sign in and out; tokens; who am I")


@blp.route("/auth/login", methods=["POST"])
@blp.arguments(LoginIn)
@blp.response(201, LoginOut)
@blp.doc(security=[])
def login(body: dict[str, object]) -> dict[str, object]:
    """Sign in. Clients get a bearer token (shown once); ``web: true`` starts a cookie session instead.

    Unknown login and wrong password give the same 401; too many failures give 429 ``auth.rate_limited``.
    """
    web = bool(body["web"])
    issued = accounts.login(
        str(body["login"]),
        str(body["password"]),
        rt=runtime(),
        client_ip=client_ip(),
        kind="session" if web else "bearer",
        label=body.get("label"),  # type: ignore[arg-type]
    )
    if web:
        session.clear()
        session[SESSION_KEY] = issued.token
    return {
        "token": None if web else issued.token,
        "token_id": issued.id,
        "person_id": issued.person_id,
        "expires_at": issued.expires_at,
    }


@blp.route("/auth/logout", methods=["POST"])
@blp.response(204)
def logout() -> None:
    """Revoke the token this request was made with (bearer or session) and clear the cookie."""
    current_session()
    token, _from_cookie = presented_token()
    if token is not None:
        accounts.revoke_token_value(token, rt=runtime())
    session.clear()


@blp.route("/auth/tokens", methods=["GET"])
@blp.response(200, TokenOut(many=True))
def list_tokens() -> list[accounts.TokenView]:
    """The caller's tokens and sessions (never their values)."""
    return accounts.list_tokens(caller().person_id, rt=runtime())


@blp.route("/auth/tokens/<id:token_id>", methods=["DELETE"])
@blp.response(204)
def revoke_token(token_id: int) -> None:
    """Revoke one of the caller's tokens."""
    accounts.revoke_token(caller().person_id, token_id, rt=runtime())


@blp.route("/me", methods=["GET"])
@blp.response(200, MeOut)
def me() -> directory.Profile:
    """The caller: name, own phone, every (role, unit) held."""
    return directory.me(caller(), rt=runtime())
