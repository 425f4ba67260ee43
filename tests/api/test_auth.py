"""Login, tokens and sessions: no user enumeration, rate limiting, revocation, the CSRF guard."""

from __future__ import annotations

from flask.testing import FlaskClient

from engine import accounts
from tests.api.conftest import Tokens
from tests.conftest import PASSWORD


def login(client: FlaskClient, who: str, password: str, **extra: object) -> tuple[int, dict[str, object]]:
    got = client.post("/api/auth/login", json={"login": who, "password": password, **extra})
    return got.status_code, got.get_json()


def test_a_login_issues_a_bearer_token_that_identifies_the_person(client: FlaskClient) -> None:
    status, body = login(client, "gw_g1", PASSWORD, label="手机App")
    assert status == 201 and str(body["token"]).startswith("gct_")
    me = client.get("/api/me", headers={"Authorization": f"Bearer {body['token']}"}).get_json()
    assert me["id"] == "gw_g1" and me["phone"] == "13900000001"
    assert me["memberships"] == [
        {"role": "grid_worker", "role_label": "网格员", "unit_id": "g1", "unit_name": "桃园社区第一网格"}
    ]


def test_unknown_login_and_wrong_password_answer_identically(client: FlaskClient) -> None:
    unknown = login(client, "nobody_here", PASSWORD)
    wrong = login(client, "gw_g1", "not-the-password")
    assert (
        unknown
        == wrong
        == (401, {"code": "auth.invalid_credentials", "message": "login or password is wrong", "details": {}})
    )


def test_repeated_failures_are_rate_limited_even_with_the_right_password(client: FlaskClient) -> None:
    for _ in range(accounts.MAX_FAILURES_PER_LOGIN):
        assert login(client, "gw_g2", "wrong")[0] == 401
    got = client.post("/api/auth/login", json={"login": "gw_g2", "password": PASSWORD})
    assert got.status_code == 429 and got.get_json()["code"] == "auth.rate_limited"
    assert int(got.headers["Retry-After"]) > 0
    assert login(client, "gw_g3", PASSWORD)[0] == 201  # another login from the same address still works


def test_tokens_are_listed_without_values_and_a_revoked_token_stops_working(client: FlaskClient) -> None:
    _, first = login(client, "gw_g1", PASSWORD, label="a")
    _, second = login(client, "gw_g1", PASSWORD, label="b")
    auth = {"Authorization": f"Bearer {first['token']}"}
    listed = client.get("/api/auth/tokens", headers=auth).get_json()
    assert [t["label"] for t in listed] == ["b", "a"] and "token" not in listed[0]
    assert client.delete(f"/api/auth/tokens/{second['token_id']}", headers=auth).status_code == 204
    gone = client.get("/api/me", headers={"Authorization": f"Bearer {second['token']}"})
    assert gone.status_code == 401 and gone.get_json()["code"] == "auth.token_invalid"
    _, other = login(client, "gw_g2", PASSWORD)
    assert client.delete(f"/api/auth/tokens/{other['token_id']}", headers=auth).status_code == 404
    assert client.post("/api/auth/logout", headers=auth).status_code == 204
    assert client.get("/api/me", headers=auth).status_code == 401


def test_a_web_login_sets_an_httponly_cookie_and_cookie_writes_need_x_requested_with(
    client: FlaskClient, tokens: Tokens
) -> None:
    got = client.post("/api/auth/login", json={"login": "gw_g1", "password": PASSWORD, "web": True})
    assert got.status_code == 201 and got.get_json()["token"] is None
    cookie = got.headers["Set-Cookie"]
    assert "gridcase_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert client.get("/api/me").get_json()["id"] == "gw_g1"
    body = {"process_id": "demo", "title": "t", "grid_id": "g1", "channel": "web"}
    refused = client.post("/api/cases", json=body)
    assert refused.status_code == 403 and refused.get_json()["code"] == "auth.csrf"
    assert client.post("/api/cases", json=body, headers={"X-Requested-With": "fetch"}).status_code == 201
    assert client.post("/api/auth/logout", headers={"X-Requested-With": "fetch"}).status_code == 204
    assert client.get("/api/me").status_code == 401


def test_malformed_authorization_headers_are_401(client: FlaskClient) -> None:
    for value in ("Basic Z3c6eA==", "Bearer", "Bearer gct_unknown", "Bearer " + "x" * 500):
        got = client.get("/api/me", headers={"Authorization": value})
        assert got.status_code == 401 and got.get_json()["code"] == "auth.token_invalid"
