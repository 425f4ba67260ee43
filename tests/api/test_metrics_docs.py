"""Operational endpoints: the OpenAPI document, the docs page without a CDN, Prometheus metrics."""

from __future__ import annotations

from flask.testing import FlaskClient

from tests.api.conftest import Tokens, World


def test_the_openapi_document_describes_every_api_route_with_the_error_shape(client: FlaskClient) -> None:
    doc = client.get("/api/openapi.json").get_json()
    assert doc["openapi"].startswith("3.") and len(doc["paths"]) >= 20
    assert set(doc["components"]["schemas"]["Error"]["required"]) == {"code", "message", "details"}
    assert doc["paths"]["/api/auth/login"]["post"]["security"] == []


def test_the_docs_page_loads_its_assets_from_this_server(client: FlaskClient) -> None:
    page = client.get("/api/docs").get_data(as_text=True)
    assert "/api/docs/assets/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    assert client.get("/api/docs/assets/swagger-ui-bundle.js").status_code == 200


def test_metrics_count_requests_by_endpoint_and_status_and_report_open_work(
    world: World, client: FlaskClient, tokens: Tokens
) -> None:
    client.get("/api/cases", headers=tokens["gw_g1"])
    client.get("/api/cases/999999", headers=tokens["gw_g1"])
    text = client.get("/metrics").get_data(as_text=True)
    assert 'gridcase_http_requests_total{endpoint="/api/cases",method="GET",status="200"} 1' in text
    assert (
        'gridcase_http_requests_total{endpoint="/api/cases/<id:case_id>",method="GET",status="404"} 1' in text
    )
    assert 'gridcase_http_request_duration_seconds_bucket{endpoint="/api/cases",le="+Inf"} 1' in text
    assert 'gridcase_cases_open{kind="demo"} 4' in text and 'gridcase_cases_open{kind="dispute"} 3' in text
    assert "gridcase_cases_overdue 0" in text
