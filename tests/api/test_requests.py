"""Requests the API must refuse clearly and harmlessly (oversized, wrong type, malformed, unknown fields,
bad headers), idempotent intake, optimistic concurrency, and 50 concurrent claims on a real server."""

from __future__ import annotations

import http.client
import json
import threading

from flask.testing import FlaskClient

from engine.runtime import Runtime
from tests.api.conftest import Tokens, World, ready_task

INTAKE = {"process_id": "demo", "title": "楼道堆物", "grid_id": "g1", "channel": "hotline_12345"}


def case_count(client: FlaskClient, tokens: Tokens) -> int:
    return len(client.get("/api/cases", headers=tokens["supervisor_d"]).get_json()["items"])


def test_a_retried_intake_with_the_same_idempotency_key_opens_one_case(
    client: FlaskClient, tokens: Tokens
) -> None:
    headers = {**tokens["gw_g1"], "Idempotency-Key": "app-7f3a-0001"}
    first = client.post("/api/cases", json=INTAKE, headers=headers)
    again = client.post("/api/cases", json={**INTAKE, "title": "重试"}, headers=headers)
    assert first.status_code == 201 and again.status_code == 200
    assert again.get_json()["id"] == first.get_json()["id"] and again.get_json()["title"] == "楼道堆物"
    other = client.post(
        "/api/cases", json=INTAKE, headers={**tokens["gw_g1_2"], "Idempotency-Key": "app-7f3a-0001"}
    )
    assert other.status_code == 201 and other.get_json()["id"] != first.get_json()["id"]
    assert case_count(client, tokens) == 2


def test_an_intake_answers_with_the_case_file_its_first_task_and_an_etag(
    client: FlaskClient, tokens: Tokens
) -> None:
    got = client.post(
        "/api/cases", json={**INTAKE, "reporter": {"phone": "13912345678"}}, headers=tokens["gw_g1"]
    )
    body = got.get_json()
    assert got.status_code == 201 and got.headers["ETag"] == '"1"'
    assert body["number"].startswith("DM") and body["status"] == "open" and body["channel"] == "hotline_12345"
    assert [t["task_spec"] for t in body["tasks"]] == ["handle"]
    assert body["data"]["reporter"]["phone"] == "13912345678"
    assert body["timeline"][0]["action"] == "case.started"


def test_bad_bodies_get_clear_4xx_codes_and_store_nothing(client: FlaskClient, tokens: Tokens) -> None:
    auth = tokens["gw_g1"]
    cases = [
        (
            client.post("/api/cases", data="{not json", headers=auth, content_type="application/json"),
            400,
            "request.malformed_json",
        ),
        (
            client.post(
                "/api/cases", data="title=x", headers=auth, content_type="application/x-www-form-urlencoded"
            ),
            415,
            "request.unsupported_media_type",
        ),
        (client.post("/api/cases", json={**INTAKE, "sneaky": 1}, headers=auth), 422, "request.invalid"),
        (client.post("/api/cases", json=[INTAKE], headers=auth), 422, "request.invalid"),
        (client.post("/api/cases", json={**INTAKE, "channel": "fax"}, headers=auth), 422, "request.invalid"),
        (
            client.post("/api/cases", json={**INTAKE, "grid_id": "nowhere"}, headers=auth),
            422,
            "case.unknown_grid",
        ),
        (
            client.post("/api/cases", json={**INTAKE, "process_id": "nope"}, headers=auth),
            422,
            "case.unknown_process",
        ),
        (
            client.post("/api/cases", json={**INTAKE, "description": "x" * 1_100_000}, headers=auth),
            413,
            "request.too_large",
        ),
        (client.put("/api/cases", json=INTAKE, headers=auth), 405, "request.method_not_allowed"),
        (client.get("/api/nothing-here", headers=auth), 404, "route.not_found"),
    ]
    for got, status, code in cases:
        body = got.get_json()
        assert (got.status_code, body["code"]) == (status, code), body
        assert set(body) == {"code", "message", "details"} and body["message"]
    fields = client.post("/api/cases", json={**INTAKE, "sneaky": 1}, headers=auth).get_json()["details"][
        "fields"
    ]
    assert fields == {"sneaky": ["Unknown field."]}
    assert case_count(client, tokens) == 0


def test_a_stale_if_match_is_refused_with_409_and_the_current_version(
    world: World, api_rt: Runtime, client: FlaskClient, tokens: Tokens
) -> None:
    task_id = ready_task(api_rt, world["A"], "handle")
    seen = client.get(f"/api/tasks/{task_id}", headers=tokens["gw_g1"])
    assert (
        seen.headers["ETag"] == '"1"'
        and seen.get_json()["actionable"]
        and seen.get_json()["form"]["required"]
    )
    claimed = client.post(f"/api/tasks/{task_id}/claim", headers={**tokens["gw_g1"], "If-Match": '"1"'})
    assert claimed.status_code == 200 and claimed.headers["ETag"] == '"2"'
    stale = client.post(
        f"/api/tasks/{task_id}/complete",
        json={"data": {"result": "已清理"}},
        headers={**tokens["gw_g1"], "If-Match": '"1"'},
    )
    assert stale.status_code == 409 and stale.get_json()["code"] == "case.stale_version"
    assert stale.get_json()["details"]["version"] == 2
    bad = client.post(f"/api/tasks/{task_id}/unclaim", headers={**tokens["gw_g1"], "If-Match": "yesterday"})
    assert bad.status_code == 400 and bad.get_json()["code"] == "request.bad_if_match"
    invalid = client.post(
        f"/api/tasks/{task_id}/complete",
        json={"data": {"result": ""}},
        headers={**tokens["gw_g1"], "If-Match": '"2"'},
    )
    assert invalid.status_code == 422 and invalid.get_json()["code"] == "form.invalid"
    done = client.post(
        f"/api/tasks/{task_id}/complete",
        json={"data": {"result": "已清理"}},
        headers={**tokens["gw_g1"], "If-Match": 'W/"2"'},
    )
    assert (
        done.status_code == 200 and done.get_json()["state"] == "completed" and done.headers["ETag"] == '"3"'
    )
    again = client.post(
        f"/api/tasks/{task_id}/complete", json={"data": {"result": "x"}}, headers=tokens["gw_g1"]
    )
    assert again.status_code == 409 and again.get_json()["code"] == "task.already_completed"


def test_fifty_concurrent_claims_of_one_task_give_exactly_one_200_and_49_409s(
    world: World, api_rt: Runtime, tokens: Tokens, served: str
) -> None:
    task_id = ready_task(api_rt, world["A"], "handle")
    people = ["gw_g1", "gw_g1_2", "supervisor_s1", "supervisor_d"]
    headers = [{**tokens[people[i % len(people)]], "Content-Length": "0"} for i in range(50)]
    barrier = threading.Barrier(50)
    statuses: list[tuple[int, str]] = []
    lock = threading.Lock()

    def claim(i: int) -> None:
        conn = http.client.HTTPConnection(served, timeout=60)
        barrier.wait()
        conn.request("POST", f"/api/tasks/{task_id}/claim", headers=headers[i])
        response = conn.getresponse()
        body = json.loads(response.read())
        conn.close()
        with lock:
            statuses.append((response.status, body.get("code", "ok")))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(s for s, _ in statuses) == [200] + [409] * 49
    assert {code for s, code in statuses if s == 409} == {"task.already_claimed"}


def test_nan_and_infinity_are_refused_up_front_and_the_task_stays_ready(
    client: FlaskClient, tokens: Tokens, api_rt: Runtime, world: World
) -> None:
    """JSON has no NaN or Infinity, but Python's reader takes them (and its writer writes them). A form's
    number field took one: on PostgreSQL the step then failed with a 500 when its audit event was
    stored, on SQLite the NaN was kept in the case. Now 422 before any view sees the body."""
    auth = tokens["dept_urban_1"]
    task = ready_task(api_rt, world["D"], "handle")
    assert client.post(f"/api/tasks/{task}/claim", headers=auth).status_code == 200
    version = client.get(f"/api/cases/{world['D']}", headers=auth).get_json()["version"]
    for number in (float("nan"), float("inf"), float("-inf")):  # json.dumps writes NaN, Infinity, -Infinity
        got = client.post(
            f"/api/tasks/{task}/complete",
            data=json.dumps({"data": {"result": "已处置", "hours_spent": number}}),
            content_type="application/json",
            headers=auth,
        )
        assert got.status_code == 422 and got.get_json()["code"] == "request.non_finite_number", got.data
    reporter = {"name": "彭", "phone": "13912345678", "scores": [1.5, float("nan")]}
    nested = client.post(
        "/api/cases",
        data=json.dumps({**INTAKE, "reporter": reporter}),
        content_type="application/json",
        headers=tokens["gw_g1"],
    )
    assert nested.status_code == 422 and nested.get_json()["code"] == "request.non_finite_number"
    case = client.get(f"/api/cases/{world['D']}", headers=auth).get_json()
    assert case["version"] == version
    assert [t["state"] for t in case["tasks"] if t["id"] == task] == ["ready"]
    done = client.post(
        f"/api/tasks/{task}/complete", json={"data": {"result": "已处置", "hours_spent": 1.5}}, headers=auth
    )
    assert done.status_code == 200, done.data


def test_half_a_surrogate_pair_is_refused_up_front_and_a_whole_pair_is_taken(
    client: FlaskClient, tokens: Tokens
) -> None:
    """A lone ``\\ud800`` escape is valid JSON text but half a character, which neither database can
    store: the intake failed with a 500 when its row was written. A pair (an emoji) is one character."""
    auth = tokens["gw_g1"]
    for title in ("楼道\ud800堆物", "楼道\udfff", "\ude00\ud83d"):  # json.dumps writes them as escapes
        got = client.post(
            "/api/cases",
            data=json.dumps({**INTAKE, "title": title}),
            content_type="application/json",
            headers=auth,
        )
        assert got.status_code == 422 and got.get_json()["code"] == "request.invalid_unicode", got.data
    assert case_count(client, tokens) == 0
    paired = json.dumps({**INTAKE, "title": "楼道堆物 \ud83d\ude00"})
    assert "\\ud83d\\ude00" in paired
    got = client.post("/api/cases", data=paired, content_type="application/json", headers=auth)
    assert got.status_code == 201 and got.get_json()["title"] == "楼道堆物 \U0001f600"


def test_nul_characters_are_refused_up_front_on_both_databases_and_nothing_is_stored(
    client: FlaskClient, tokens: Tokens
) -> None:
    auth = tokens["gw_g1"]
    body = client.post("/api/cases", json={**INTAKE, "title": "楼道\u0000堆物"}, headers=auth)
    query = client.get("/api/cases?text=%00", headers=tokens["supervisor_d"])
    marks = client.post("/api/notifications/read", json={"ids": ["1:gw\u0000g1"]}, headers=auth)
    assert [r.status_code for r in (body, query, marks)] == [422, 422, 422]
    assert {r.get_json()["code"] for r in (body, query, marks)} == {"request.nul_character"}
    assert case_count(client, tokens) == 0
    malformed_id = client.post("/api/notifications/read", json={"ids": ["not-an-id"]}, headers=auth)
    assert malformed_id.status_code == 422 and "ids" in malformed_id.get_json()["details"]["fields"]
