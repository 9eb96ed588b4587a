"""The refresh's BG/NBD sample: bounded, and the same merged sample whatever the workers and the order."""

from __future__ import annotations

import json
import random
from functools import reduce

from hypothesis import given, settings
from hypothesis import strategies as st

from loyalty.segments.refresh import BgNbdSample, ScanState, fit_model, member_hash
from loyalty.segments.rfm import RfmSummary


def _rows(ids: list[str], seed: int) -> list[tuple[int, int, int, int, float]]:
    rng = random.Random(seed)
    rows = []
    for member_id in ids:
        age = rng.randint(0, 700)
        x = rng.choice([0, 0, 1, 2, 5])
        rows.append((member_hash(member_id), x, 0 if x == 0 else rng.randint(0, age), age, rng.choice([0.0, 25.5])))
    return rows


def _worker_sample(rows: list[tuple[int, int, int, int, float]], cap: int, page: int) -> BgNbdSample:
    sample = BgNbdSample(cap=cap)
    for start in range(0, len(rows), page):
        sample = sample.add(rows[start : start + page])
    return sample


@settings(max_examples=60, deadline=None)
@given(
    members=st.integers(0, 600),
    cap=st.integers(1, 150),
    page=st.integers(1, 50),
    seed=st.integers(0, 10_000),
)
def test_one_worker_and_four_workers_give_the_same_sample(members: int, cap: int, page: int, seed: int) -> None:
    ids = [f"member-{seed}-{i}" for i in range(members)]
    rows = _rows(ids, seed)
    one = _worker_sample(rows, cap, page)
    rng = random.Random(seed)
    shares: list[list[tuple[int, int, int, int, float]]] = [[] for _ in range(4)]
    for row in rows:
        shares[rng.randrange(4)].append(row)
    parts = [_worker_sample(share, cap, page) for share in shares]
    rng.shuffle(parts)
    four = reduce(BgNbdSample.merge, parts, BgNbdSample(cap=cap))
    assert four == one
    # bounded, and exactly the members whose hash is 0 mod 2^k, with the smallest such k
    assert len(one.rows) <= cap
    assert sorted(one.rows) == sorted(row for row in rows if row[0] % (1 << one.k) == 0)
    if one.k > 0:
        assert sum(1 for row in rows if row[0] % (1 << (one.k - 1)) == 0) > cap
    # and it survives the part state's JSON
    state = ScanState(RfmSummary(), one)
    assert ScanState.from_json(state.to_json()).sample == one


def test_a_part_state_of_the_old_format_reads_as_a_summary_without_a_sample() -> None:
    summary = RfmSummary()
    state = ScanState.from_json(summary.to_json())
    assert state.summary == summary and state.sample is None
    assert ScanState().merge(state).sample is None
    assert fit_model(None, "run", "2026-01-01T00:00:00Z") is None


def test_a_full_sample_stays_well_under_the_item_limit() -> None:
    rng = random.Random(1)
    rows = [
        (member_hash(f"m-{i}"), rng.randint(0, 300), rng.randint(0, 700), rng.randint(700, 1500), 12345.67)
        for i in range(20_000)
    ]
    sample = _worker_sample(rows, 3000, 1000)
    assert 1500 < len(sample.rows) <= 3000
    size = len(json.dumps(sample.to_json(), separators=(",", ":")))
    assert size < 120_000, size


def test_too_small_a_sample_fits_no_model() -> None:
    rows = _rows([f"m-{i}" for i in range(50)], 3)
    assert fit_model(BgNbdSample().add(rows), "run", "2026-01-01T00:00:00Z") is None
