"""Cold starts stay small: each handler's import, in a fresh interpreter, costs at most a few times the import of
boto3 and pydantic (which every handler needs anyway), measured in the same run, and pulls in nothing heavy
(numeric libraries live in their own layer, used only by the refresh jobs).

A ratio, not seconds: both sides slow down together on a loaded machine. Measured here (best of 3): boto3 +
pydantic 0.31 s, members_api 0.78 s (x2.5), the event functions 0.47-0.59 s (x1.5-1.9).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUDGET_RATIO = {
    "members_api": 3.5,
    "admin_api": 3.5,
    "order_events": 2.5,
    "event_publisher": 2.5,
    "token_claims": 2.5,
    "segment_events": 3.0,
    "segment_refresh": 8.0,  # the scheduled refresh: numpy and the analytics layer are its job
}
FORBIDDEN = ("numpy", "pandas", "scipy", "loyalty_analytics", "moto", "yaml", "requests", "devstack")
ALLOWED = {"segment_refresh": {"numpy", "scipy", "loyalty_analytics"}}  # the only users of the analytics layer

PROBE = """
import json, sys, time
if sys.argv[1] != "-":
    sys.path.insert(0, sys.argv[1])
start = time.perf_counter()
if sys.argv[1] == "-":
    import boto3, pydantic
else:
    import app
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "modules": sorted(sys.modules)}))
"""


def _import(target: str) -> dict[str, object]:
    env = {**os.environ, "TABLE_NAME": "budget-table", "EVENT_BUS_NAME": "budget-bus"}
    runs = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", PROBE, target], capture_output=True, text=True, check=True, env=env
            ).stdout
        )
        for _ in range(3)
    ]
    return {"seconds": min(float(run["seconds"]) for run in runs), "modules": runs[0]["modules"]}


def test_every_function_has_a_budget() -> None:
    assert set(BUDGET_RATIO) == {path.parent.name for path in (ROOT / "functions").glob("*/app.py")}


@pytest.mark.parametrize("function", sorted(BUDGET_RATIO))
def test_handler_cold_import_stays_within_budget(function: str) -> None:
    baseline = _import("-")
    handler = _import(str(ROOT / "functions" / function))
    ratio = float(handler["seconds"]) / float(baseline["seconds"])  # type: ignore[arg-type]
    assert ratio < BUDGET_RATIO[function], f"{function} imports in {ratio:.2f}x boto3+pydantic"
    imported = {str(name).split(".")[0] for name in handler["modules"]}  # type: ignore[attr-defined]
    heavy = sorted((imported & set(FORBIDDEN)) - ALLOWED.get(function, set()))
    assert not heavy, f"{function} imports {heavy}"
