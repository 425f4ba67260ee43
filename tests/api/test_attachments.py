"""Attachments: stored outside the database, type sniffed from the bytes, size-limited, scoped like cases."""

from __future__ import annotations

import io
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from engine import attachments
from tests.api.conftest import Tokens, World

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


def upload(
    client: FlaskClient, case_id: int, headers: dict[str, str], raw: bytes, name: str = "photo.png"
) -> TestResponse:
    return client.post(
        f"/api/cases/{case_id}/attachments",
        data={"file": (io.BytesIO(raw), name)},
        headers=headers,
        content_type="multipart/form-data",
    )


def test_a_photo_is_stored_as_a_file_and_downloaded_with_its_sniffed_type(
    app: Flask, world: World, client: FlaskClient, tokens: Tokens
) -> None:
    got = upload(client, world["A"], tokens["gw_g1"], PNG, name="../../etc/现场.jpg")
    body = got.get_json()
    assert got.status_code == 201 and body["content_type"] == "image/png" and body["filename"] == "现场.jpg"
    stored = list(Path(app.extensions["gridcase.config"].attachments_path()).rglob(body["id"]))
    assert len(stored) == 1 and stored[0].read_bytes() == PNG
    down = client.get(f"/api/attachments/{body['id']}", headers=tokens["community_c1"])
    assert down.status_code == 200 and down.data == PNG and down.mimetype == "image/png"
    assert down.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get(f"/api/attachments/{body['id']}", headers=tokens["gw_g5"]).status_code == 404
    listed = client.get(f"/api/cases/{world['A']}", headers=tokens["gw_g1"]).get_json()["attachments"]
    assert [a["id"] for a in listed] == [body["id"]]


def test_unknown_types_oversized_files_and_foreign_cases_are_refused_and_leave_no_file(
    app: Flask, world: World, client: FlaskClient, tokens: Tokens
) -> None:
    exe = upload(client, world["A"], tokens["gw_g1"], b"MZ\x90\x00" + b"\0" * 100, name="x.png")
    assert exe.status_code == 415 and exe.get_json()["code"] == "attachment.unsupported_type"
    big = upload(client, world["A"], tokens["gw_g1"], PNG + b"\0" * attachments.MAX_BYTES)
    assert big.status_code == 413 and big.get_json()["code"] in {"attachment.too_large", "request.too_large"}
    foreign = upload(client, world["C"], tokens["gw_g1"], PNG)
    assert foreign.status_code == 404
    json_body = client.post(
        f"/api/cases/{world['A']}/attachments", json={"file": "x"}, headers=tokens["gw_g1"]
    )
    assert json_body.status_code == 415
    folder = Path(app.extensions["gridcase.config"].attachments_path())
    assert not folder.exists() or not [p for p in folder.rglob("*") if p.is_file()]


def test_the_sniffer_knows_the_field_formats() -> None:
    assert attachments.sniff(b"\xff\xd8\xff\xe0" + b"\0" * 12) == "image/jpeg"
    assert attachments.sniff(b"RIFF\0\0\0\0WEBPVP8 ") == "image/webp"
    assert attachments.sniff(b"%PDF-1.7\n") == "application/pdf"
    assert attachments.sniff(b"ID3\x04\0\0\0\0\0\0") == "audio/mpeg"
    assert attachments.sniff(b"\0\0\0\x20ftypM4A \0\0\0\0") == "audio/mp4"
    assert attachments.sniff(b"#!AMR\n") == "audio/amr"
    assert attachments.sniff(b"<html><script>") is None
