"""The committed OpenAPI document is the one the code generates, and it documents every route."""

from __future__ import annotations

import json

from devstack.openapi import DOCUMENT, generate


def test_committed_openapi_matches_the_code() -> None:
    assert DOCUMENT.read_text() == generate(), "openapi.json is out of date: run `make openapi`"


def test_every_write_documents_its_error_bodies() -> None:
    paths = json.loads(generate())["paths"]
    for path, methods in paths.items():
        for method, operation in methods.items():
            if method != "post":
                continue
            for status in ("400", "401", "403", "422"):
                content = operation["responses"][status]["content"]["application/json"]["schema"]
                assert content == {"$ref": "#/components/schemas/ErrorBody"}, (path, status)
