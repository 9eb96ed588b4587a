"""The refresh bench (`make bench`, bench/refresh.py) at a small size, so it cannot rot between the runs that
produce docs/refresh-estimate.md's figures: it completes, and every check it makes on its runs passes (1 roster item
per member per pass, one transaction per changed member, nothing written on unchanged facts, memberships equal to
the pure core's).

160 members: about the fewest at which run A's BG/NBD sample reaches refresh.MIN_SAMPLE_MEMBERS (121 purchasers
of 160 with the bench's seed), so the runs still fit, publish and compare a prediction model; every other check
holds at any size. At 300 the bench took about 75 s here, at 160 about 50 s."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bench import refresh


@pytest.mark.dynamodb_local
def test_the_refresh_bench_runs_and_all_its_checks_pass(
    dynamodb_local: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    refresh.main(["--members", "160", "--baseline", "5", "--ingest-threads", "2"])  # SystemExit(1) on a failed check
    printed = capsys.readouterr().out
    checks = re.search(r"checks: (\d+) passed, (\d+) failed", printed)
    assert checks is not None, printed[-2000:]
    assert int(checks.group(1)) >= 20 and checks.group(2) == "0"
    assert "roster items read per member per pass 1.000" in printed
    assert "run C: 0 transactions" in printed  # a refresh on unchanged facts writes nothing
    assert "prediction model: fitted on a sample" in printed  # runs B and D compare a fitted model, not None
