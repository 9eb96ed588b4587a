"""`make openapi`: write the OpenAPI document generated from the API's code to openapi.json (committed).

`python -m devstack.openapi --check` exits 1 when the committed document differs from the code's.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = ROOT / "openapi.json"


def generate() -> str:
    os.environ.setdefault("TABLE_NAME", "openapi-export")
    spec = importlib.util.spec_from_file_location("openapi_members_api", ROOT / "functions/members_api/app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves postponed annotations through it
    spec.loader.exec_module(module)
    return json.dumps(json.loads(module.app.get_openapi_json_schema()), indent=2, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    document = generate()
    if args.check:
        if not DOCUMENT.exists() or DOCUMENT.read_text() != document:
            print("openapi.json is out of date: run `make openapi`", file=sys.stderr)
            return 1
        return 0
    DOCUMENT.write_text(document)
    print(f"wrote {DOCUMENT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
