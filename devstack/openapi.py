"""`make openapi`: write the OpenAPI documents generated from the API functions' code (committed).

One document per API function, as each function serves its own: `openapi.json` (members API, open at
/v1/openapi.json) and `openapi.admin.json` (admin API, at /v1/admin/openapi.json for admins).
`python -m devstack.openapi --check` exits 1 when a committed document differs from the code's.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    stale = []
    for function, path in DOCUMENTS.items():
        document = generate(function)
        if args.check:
            if not path.exists() or path.read_text() != document:
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
