"""The refresh bench (`make bench`, bench/refresh.py) at a small size, so it cannot rot between the runs that
produce docs/refresh-estimate.md's figures: it completes, and every check it makes on its runs passes (1 roster item
per member per pass, one transaction per changed member, nothing written on unchanged facts, memberships equal to
the pure core's)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bench import refresh


@pytest.mark.dynamodb_local
def test_the_refresh_bench_runs_and_all_its_checks_pass(
    dynamodb_local: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    refresh.main(["--members", "300", "--baseline", "5", "--ingest-threads", "2"])  # SystemExit(1) on a failed check
    printed = capsys.readouterr().out
    checks = re.search(r"checks: (\d+) passed, (\d+) failed", printed)
    assert checks is not None, printed[-2000:]
    assert int(checks.group(1)) >= 20 and checks.group(2) == "0"
    assert "roster items read per member per pass 1.000" in printed
    assert "run C: 0 transactions" in printed  # a refresh on unchanged facts writes nothing
