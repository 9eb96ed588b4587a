"""The committed OpenAPI document is the one the code generates, and it documents every route."""

from __future__ import annotations

import json

import pytest

from devstack.openapi import DOCUMENTS, canonical, generate


@pytest.mark.parametrize("function", sorted(DOCUMENTS))
def test_committed_openapi_matches_the_code(function: str) -> None:
    # Compared in canonical form: the same code generates the same canonical document with any Powertools and pydantic
    # inside pyproject's ranges (devstack/openapi.py names what differs between them).
    path = DOCUMENTS[function]
    assert canonical(path.read_text()) == canonical(generate(function)), (
        f"{path.name} is out of date: run `make openapi`"
    )


def _schema(**fields: object) -> str:
    return json.dumps({"components": {"schemas": {"Model": {"properties": fields, "type": "object"}}}})


# Each pair: one field as pydantic 2.9, 2.10 or 2.13 writes it, then as 2.14 (the locked version) writes it.
VERSION_NOISE = [
    pytest.param(
        {"const": "refund", "enum": ["refund"], "type": "string"}, {"const": "refund", "type": "string"}, id="enum"
    ),
    pytest.param({"type": "object"}, {"additionalProperties": True, "type": "object"}, id="additionalProperties"),
    pytest.param(
        {"anyOf": [{"type": "number"}, {"pattern": r"^(?!^[-+.]*$)[+-]?0*\d*\.?\d*$", "type": "string"}]},
        {"anyOf": [{"type": "number"}, {"type": "string"}]},
        id="decimal-pattern",
    ),
]


@pytest.mark.parametrize(("older", "locked"), VERSION_NOISE)
def test_the_canonical_form_hides_library_versions(older: dict[str, object], locked: dict[str, object]) -> None:
    assert canonical(_schema(field=older)) == canonical(_schema(field=locked))


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({"maxLength": 128, "type": "string"}, {"maxLength": 64, "type": "string"}),
        ({"pattern": "^[a-z]+$", "type": "string"}, {"type": "string"}),
        ({"additionalProperties": False, "type": "object"}, {"type": "object"}),
        ({"const": "a", "enum": ["a", "b"]}, {"const": "a"}),
        ({"description": "Points earned.", "type": "integer"}, {"description": "Points spent.", "type": "integer"}),
    ],
)
def test_the_canonical_form_still_shows_changes_in_the_code(
    before: dict[str, object], after: dict[str, object]
) -> None:
    assert canonical(_schema(field=before)) != canonical(_schema(field=after))


@pytest.mark.parametrize("function", sorted(DOCUMENTS))
def test_every_write_documents_its_error_bodies(function: str) -> None:
    paths = json.loads(generate(function))["paths"]
    for path, methods in paths.items():
        for method, operation in methods.items():
            if method not in ("post", "put", "patch"):
                continue
            for status in ("400", "401", "403", "422"):
                content = operation["responses"][status]["content"]["application/json"]["schema"]
                assert content == {"$ref": "#/components/schemas/ErrorBody"}, (path, status)
