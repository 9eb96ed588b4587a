"""`make openapi`: write the OpenAPI documents generated from the API functions' code (committed).

One document per API function, as each function serves its own: `openapi.json` (members API, open at
/v1/openapi.json) and `openapi.admin.json` (admin API, at /v1/admin/openapi.json for admins).
`python -m devstack.openapi --check` exits 1 when a committed document differs from the code's.

The documents are written as the locked versions of Powertools and pydantic generate them (requirements/dev.lock),
which is what the deployed functions serve. Versions elsewhere inside pyproject's ranges word a few schemas
differently without changing what they accept, so the check compares the `canonical` form of both sides: a change
in the code still shows, a change of library version inside the ranges does not (docs/dependencies.md).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = {"members_api": ROOT / "openapi.json", "admin_api": ROOT / "openapi.admin.json"}
DOCUMENT = DOCUMENTS["members_api"]


def generate(function: str = "members_api") -> str:
    os.environ.setdefault("TABLE_NAME", "openapi-export")
    spec = importlib.util.spec_from_file_location(f"openapi_{function}", ROOT / "functions" / function / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves postponed annotations through it
    spec.loader.exec_module(module)
    return json.dumps(json.loads(module.app.get_openapi_json_schema()), indent=2, sort_keys=True) + "\n"


# The start of the pattern pydantic 2.12 and 2.13 give a Decimal's string form (2.14 gives none).
_DECIMAL_PATTERN = "^(?!^[-+.]*$)[+-]?0*"


def _canonical(node: Any) -> Any:
    if isinstance(node, list):
        return [_canonical(item) for item in node]
    if not isinstance(node, dict):
        return node
    schema = {key: _canonical(value) for key, value in node.items()}
    # pydantic 2.9 repeats a Literal's const as a one-item enum; later versions give the const alone.
    if "const" in schema and schema.get("enum") == [schema["const"]]:
        del schema["enum"]
    # pydantic 2.11+ writes additionalProperties: true on a free-form dict; 2.9 and 2.10 leave out what is JSON
    # Schema's default anyway.
    if schema.get("additionalProperties") is True:
        del schema["additionalProperties"]
    # pydantic 2.12 and 2.13 add a pattern to a Decimal's string form; 2.11 and 2.14 do not. The validation is
    # pydantic's own either way.
    if schema.get("type") == "string" and str(schema.get("pattern", "")).startswith(_DECIMAL_PATTERN):
        del schema["pattern"]
    return schema


def canonical(document: str) -> str:
    """The document less what differs between library versions inside the ranges (each rule names its versions).

    Powertools before 3.29 is not covered: it gives a model one schema for requests and responses alike (a response's
    Decimal documented as number or string, where the function returns a string), a real difference, and pyproject
    asks for 3.29 or later.
    """
    return json.dumps(_canonical(json.loads(document)), indent=2, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    stale = []
    for function, path in DOCUMENTS.items():
        document = generate(function)
        if args.check:
            if not path.exists() or canonical(path.read_text()) != canonical(document):
                stale.append(path.name)
            continue
        path.write_text(document)
        print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print(f"{', '.join(stale)} out of date: run `make openapi`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
