"""The DynamoDB adapters' pure parts: opaque ledger cursors, month keys and sortable timestamps."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loyalty.adapters.dynamodb.points_store import ledger_cursor, ledger_position
from loyalty.core.errors import InvalidRequest
from loyalty.core.instants import timestamp
from loyalty.points.member_record import month_key, months_before

PK = "MEMBER#m_01jq3b7x4m2k9r8t6v5w4y3z2a"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# ---- cursors ------------------------------------------------------------------------------------------------


@given(entry_id=st.text(alphabet="0123456789ABCDEFGHJKMNPQRSTVWXYZ", min_size=1, max_size=26))
@settings(max_examples=100, database=None)
def test_a_cursor_round_trips_to_the_key_it_was_made_from(entry_id: str) -> None:
    last_key = {"PK": {"S": PK}, "SK": {"S": f"LEDGER#{entry_id}"}}

    cursor = ledger_cursor(last_key)

    assert cursor is not None
    assert "=" not in cursor and "+" not in cursor and "/" not in cursor  # safe in a query string as it is
    assert ledger_position(cursor, PK) == last_key


def test_no_last_key_means_no_cursor() -> None:
    assert ledger_cursor(None) is None
    assert ledger_cursor({}) is None


def test_a_cursor_carries_no_partition_key_so_it_is_always_read_inside_the_callers_partition() -> None:
    cursor = ledger_cursor({"PK": {"S": "MEMBER#someone-else"}, "SK": {"S": "LEDGER#01ABC"}})
    assert cursor is not None

    assert ledger_position(cursor, PK)["PK"] == {"S": PK}
    assert "someone-else" not in base64.urlsafe_b64decode(cursor + "==").decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!not-base64!!!",
        "a",  # base64 of nothing decodable
        b64(b"not json at all"),
        b64(b"\xff\xfe\xfd"),  # not UTF-8
        b64(json.dumps({"pk": "x"}).encode()),  # no sk
        b64(json.dumps(["LEDGER#01ABC"]).encode()),  # JSON, wrong shape
        b64(json.dumps("LEDGER#01ABC").encode()),
        b64(json.dumps({"sk": 42}).encode()),  # sk not a string
        b64(json.dumps({"sk": None}).encode()),
        b64(json.dumps({"sk": "MEMBER"}).encode()),  # the member item itself, not a ledger entry
        b64(json.dumps({"sk": "ORDER"}).encode()),
        b64(json.dumps({"sk": "ledger#01abc"}).encode()),  # prefix is case-sensitive
    ],
    ids=[
        "garbage",
        "one-char",
        "non-json",
        "non-utf8",
        "no-sk",
        "list",
        "string",
        "int-sk",
        "null-sk",
        "member-sk",
        "order-sk",
        "lower-prefix",
    ],
)
def test_a_cursor_this_api_did_not_issue_is_refused_with_the_field(cursor: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        ledger_position(cursor, PK)

    assert refused.value.field == "cursor"
    assert refused.value.status == 422


@given(st.text(max_size=60))
@settings(max_examples=300, database=None)
def test_any_string_as_a_cursor_is_either_a_ledger_key_or_a_clean_refusal(cursor: str) -> None:
    key: dict[str, Any] | None = None
    refused_field: str | None = None
    try:
        key = ledger_position(cursor, PK)
    except InvalidRequest as refused:
        refused_field = refused.field

    if key is None:
        assert refused_field == "cursor"
    else:
        assert key["PK"] == {"S": PK}
        assert key["SK"]["S"].startswith("LEDGER#")


# ---- months and timestamps ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "count", "expected"),
    [
        (datetime(2026, 3, 15, tzinfo=UTC), 0, "2026-03"),
        (datetime(2026, 3, 15, tzinfo=UTC), 2, "2026-01"),
        (datetime(2026, 3, 15, tzinfo=UTC), 3, "2025-12"),
        (datetime(2026, 1, 1, tzinfo=UTC), 1, "2025-12"),
        (datetime(2026, 1, 31, tzinfo=UTC), 12, "2025-01"),
        (datetime(2026, 1, 31, tzinfo=UTC), 13, "2024-12"),
        (datetime(2026, 12, 31, tzinfo=UTC), 24, "2024-12"),
        (datetime(2026, 12, 31, tzinfo=UTC), 36, "2023-12"),
        (datetime(2026, 6, 1, tzinfo=UTC), -7, "2027-01"),
    ],
)
def test_months_before_counts_back_across_year_boundaries(moment: datetime, count: int, expected: str) -> None:
    assert months_before(moment, count) == expected


@given(
    moment=st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9000, 1, 1), timezones=st.just(UTC)),
    count=st.integers(min_value=0, max_value=400),
)
@settings(max_examples=300, database=None)
def test_months_before_agrees_with_stepping_back_one_month_at_a_time(moment: datetime, count: int) -> None:
    year, month = moment.year, moment.month
    for _ in range(count):
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)

    assert months_before(moment, count) == f"{year:04d}-{month:02d}"
    assert months_before(moment, 0) == month_key(moment)


def test_month_key_is_the_utc_month_of_the_moment() -> None:
    new_years_eve_in_new_york = datetime(2025, 12, 31, 20, 0, tzinfo=timezone(timedelta(hours=-5)))
    new_years_day_in_tokyo = datetime(2026, 1, 1, 8, 0, tzinfo=timezone(timedelta(hours=9)))

    assert month_key(new_years_eve_in_new_york) == "2026-01"  # already 01:00 UTC on January 1st
    assert month_key(new_years_day_in_tokyo) == "2025-12"  # still 23:00 UTC on December 31st


def test_timestamp_is_utc_with_microseconds() -> None:
    moment = datetime(2026, 11, 23, 8, 52, 26, 428082, tzinfo=timezone(timedelta(hours=1)))

    assert timestamp(moment) == "2026-11-23T07:52:26.428082Z"
    assert timestamp(moment.replace(microsecond=0)) == "2026-11-23T07:52:26.000000Z"


aware = st.datetimes(
    min_value=datetime(1000, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-11)), timezone(timedelta(hours=14))]),
)


@given(a=aware, b=aware)
@settings(max_examples=500, database=None)
def test_timestamps_are_fixed_width_and_sort_like_time(a: datetime, b: datetime) -> None:
    ta, tb = timestamp(a), timestamp(b)

    assert len(ta) == len(tb) == len("2026-11-23T07:52:26.428082Z")
    assert (ta < tb) == (a < b)
    assert (ta == tb) == (a == b)


def test_timestamps_stay_fixed_width_before_year_1000() -> None:
    early = datetime(999, 12, 31, tzinfo=UTC)

    assert len(timestamp(early)) == len(timestamp(datetime(2026, 1, 1, tzinfo=UTC)))
    assert timestamp(early) < timestamp(datetime(2026, 1, 1, tzinfo=UTC))
