"""The committed OpenAPI document is the one the code generates, and it documents every route."""

from __future__ import annotations

import json

import pytest

from devstack.openapi import DOCUMENTS, generate


@pytest.mark.parametrize("function", sorted(DOCUMENTS))
def test_committed_openapi_matches_the_code(function: str) -> None:
    path = DOCUMENTS[function]
    assert path.read_text() == generate(function), f"{path.name} is out of date: run `make openapi`"


@pytest.mark.parametrize("function", sorted(DOCUMENTS))
def test_every_write_documents_its_error_bodies(function: str) -> None:
    paths = json.loads(generate(function))["paths"]
    for path, methods in paths.items():
        for method, operation in methods.items():
            if method not in ("post", "put"):
                continue
            for status in ("400", "401", "403", "422"):
                content = operation["responses"][status]["content"]["application/json"]["schema"]
                assert content == {"$ref": "#/components/schemas/ErrorBody"}, (path, status)
