"""Cold starts stay small: each handler's import, in a fresh interpreter, costs at most a few times the import of
boto3 and pydantic (which every handler needs anyway), measured in the same run, and pulls in nothing heavy
(numeric libraries live in their own layer, used only by the refresh jobs).

A ratio of CPU seconds (the probe's own process time, not the wall clock), so parallel test workers or a loaded
machine barely move it; the two sides are measured in turns (best of 5 each). Measured here in CPU time
(docs/observability.md): members_api x3.0 and admin_api x3.2 with the X-Ray Tracer (x2.2 and x2.4 without it: the
SDK and its patching of botocore cost about 0.8 of boto3 + pydantic), the event functions x1.5-1.8, segment_refresh
x5.6 (numpy, scipy).
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
    "segment_reevaluation": 3.0,
    "segment_refresh": 8.0,
    "tier_review": 2.5,
    "points_expiry": 2.5,  # the scheduled refresh: numpy and the analytics layer are its job
}
FORBIDDEN = ("numpy", "pandas", "scipy", "loyalty_analytics", "moto", "yaml", "requests", "devstack")
ALLOWED = {"segment_refresh": {"numpy", "scipy", "loyalty_analytics"}}  # the only users of the analytics layer

PROBE = """
import json, sys, time
if sys.argv[1] != "-":
    sys.path.insert(0, sys.argv[1])
start = time.process_time()
if sys.argv[1] == "-":
    import boto3, pydantic
else:
    import app
elapsed = time.process_time() - start
print(json.dumps({"seconds": elapsed, "modules": sorted(sys.modules)}))
"""


def _probe(target: str) -> dict[str, object]:
    env = {**os.environ, "TABLE_NAME": "budget-table", "EVENT_BUS_NAME": "budget-bus"}
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, target], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(completed.stdout)


def _best_ratio(target: str, rounds: int = 5) -> tuple[float, list[str]]:
    """Best of `rounds` for each side, the two sides interleaved, so a burst of load on the machine slows both."""
    baseline: list[float] = []
    handler: list[float] = []
    modules: list[str] = []
    for _ in range(rounds):
        baseline.append(float(_probe("-")["seconds"]))  # type: ignore[arg-type]
        run = _probe(target)
        handler.append(float(run["seconds"]))  # type: ignore[arg-type]
        modules = list(run["modules"])  # type: ignore[call-overload]
    return min(handler) / min(baseline), modules


def test_every_function_has_a_budget() -> None:
    assert set(BUDGET_RATIO) == {path.parent.name for path in (ROOT / "functions").glob("*/app.py")}


@pytest.mark.parametrize("function", sorted(BUDGET_RATIO))
def test_handler_cold_import_stays_within_budget(function: str) -> None:
    ratio, modules = _best_ratio(str(ROOT / "functions" / function))
    assert ratio < BUDGET_RATIO[function], f"{function} imports in {ratio:.2f}x boto3+pydantic"
    imported = {name.split(".")[0] for name in modules}
    heavy = sorted((imported & set(FORBIDDEN)) - ALLOWED.get(function, set()))
    assert not heavy, f"{function} imports {heavy}"
