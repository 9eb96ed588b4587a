"""Segmentation features from one member item: windows of whole UTC months ending with the as-of month."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from loyalty.adapters.dynamodb.table import from_item, to_item
from loyalty.segments.config import SegmentationConfig
from loyalty.segments.features import features_of

CONFIG = SegmentationConfig()
AS_OF = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def member_item(**fields: Any) -> dict[str, Any]:
    """A member item as the store reads it: Decimal numbers, fixed-width UTC timestamp strings."""
    item: dict[str, Any] = {
        "member_id": "m_1",
        "tier": "Insider",
        "enrolled_at": "2024-03-01T09:00:00.000000Z",
        "profile": {},
        "consent": {},
        "available": Decimal(0),
        "lifetime_earned": Decimal(0),
        "purchase_count": Decimal(0),
        "spend_by_month": {},
        "purchases_by_month": {},
        "points_by_month": {},
    }
    item.update(fields)
    return item


def months(values: dict[str, int | str]) -> dict[str, Decimal]:
    return {month: Decimal(str(value)) for month, value in values.items()}


def test_windows_include_the_as_of_month_and_cross_the_year_end() -> None:
    # Given purchases in every month from 2025-01 to 2026-01, one more each month back
    purchases = {f"2025-{m:02d}": 13 - m for m in range(1, 13)} | {"2026-01": 1000}
    item = member_item(purchases_by_month=months(purchases), last_purchase_at="2026-01-10T10:00:00.000000Z")

    # When features are computed as of 15 January 2026
    features = features_of(item, AS_OF, CONFIG)

    # Then 6 months are 2025-08..2026-01 and 12 months are 2025-02..2026-01 (2025-01 is the 13th month back)
    assert features.purchases_6m == 1000 + 5 + 4 + 3 + 2 + 1
    assert features.purchases_12m == 1000 + sum(range(1, 12))
    assert features.frequency == features.purchases_12m  # the default RFM window is 12 months


def test_months_older_than_a_window_and_months_after_as_of_are_ignored() -> None:
    item = member_item(
        spend_by_month=months({"2024-12": "999.99", "2025-01": "50.00", "2025-02": "10.25", "2026-02": "77.00"}),
        last_purchase_at="2025-02-03T00:00:00.000000Z",
    )

    features = features_of(item, AS_OF, CONFIG)

    assert features.monetary == Decimal("10.25")
    assert features.spend_12m == Decimal("10.25")
    assert features.spend_6m == Decimal(0)


def test_spend_stays_exact_decimal() -> None:
    item = member_item(
        spend_by_month=months({"2026-01": "0.10", "2025-12": "0.20"}), last_purchase_at="2026-01-01T00:00:00Z"
    )

    features = features_of(item, AS_OF, CONFIG)

    assert features.monetary == Decimal("0.30")
    assert isinstance(features.monetary, Decimal)


def test_the_rfm_window_is_configuration_and_moves_only_frequency_and_monetary() -> None:
    item = member_item(
        purchases_by_month=months({"2026-01": 1, "2025-10": 2, "2025-03": 4}),
        spend_by_month=months({"2026-01": 10, "2025-10": 20, "2025-03": 40}),
        last_purchase_at="2026-01-02T00:00:00Z",
    )

    three_months = features_of(item, AS_OF, SegmentationConfig(rfm_window_months=3))
    twenty_four = features_of(item, AS_OF, SegmentationConfig(rfm_window_months=24))

    assert (three_months.frequency, three_months.monetary) == (1, Decimal(10))
    assert (twenty_four.frequency, twenty_four.monetary) == (7, Decimal(70))
    assert three_months.purchases_12m == twenty_four.purchases_12m == 7


def test_active_months_count_months_with_a_purchase_not_purchases() -> None:
    item = member_item(
        purchases_by_month=months({"2026-01": 9, "2025-12": 0, "2025-11": 1, "2025-08": 2, "2025-07": 5}),
        last_purchase_at="2026-01-02T00:00:00Z",
    )

    assert features_of(item, AS_OF, CONFIG).active_months_6m == 3  # 2025-07 is the 7th month back


def test_points_windows_sum_net_points_per_month() -> None:
    item = member_item(points_by_month=months({"2026-01": 100, "2025-09": 250, "2025-06": 400, "2024-12": 9}))

    features = features_of(item, AS_OF, CONFIG)

    assert (features.points_6m, features.points_12m) == (350, 750)


def test_recency_counts_utc_calendar_days_not_elapsed_hours() -> None:
    item = member_item(last_purchase_at="2026-01-14T23:59:00.000000Z", first_purchase_at="2025-01-15T08:00:00Z")

    features = features_of(item, datetime(2026, 1, 15, 0, 1, tzinfo=UTC), CONFIG)

    assert features.recency_days == 1  # two minutes, but yesterday
    assert features.days_since_first_purchase == 365


def test_as_of_in_another_zone_is_read_in_utc() -> None:
    item = member_item(last_purchase_at="2026-01-15T00:30:00Z")
    # 01:00 in Paris on the 15th is 00:00 UTC on the 15th; 23:30 in New York on the 14th is 04:30 UTC on the 15th
    paris = datetime(2026, 1, 15, 1, 0, tzinfo=timezone(timedelta(hours=1)))
    new_york = datetime(2026, 1, 14, 23, 30, tzinfo=timezone(timedelta(hours=-5)))

    assert features_of(item, paris, CONFIG).recency_days == 0
    assert features_of(item, new_york, CONFIG).recency_days == 0


def test_a_purchase_dated_after_as_of_counts_as_today() -> None:
    item = member_item(last_purchase_at="2026-01-20T00:00:00Z", first_purchase_at="2026-01-20T00:00:00Z")

    features = features_of(item, AS_OF, CONFIG)

    assert features.recency_days == 0
    assert features.days_since_first_purchase == 0


def test_a_member_who_never_purchased_has_no_recency_and_empty_windows() -> None:
    features = features_of(member_item(enrolled_at="2025-12-16T10:00:00Z"), AS_OF, CONFIG)

    assert features.recency_days is None
    assert features.days_since_first_purchase is None
    assert not features.has_purchased
    assert (features.frequency, features.monetary, features.points_12m, features.purchase_count) == (0, 0, 0, 0)
    assert features.days_since_enrolled == 30


@pytest.mark.parametrize(
    ("birthday", "age"),
    [
        ("1990-01-15", 36),  # birthday today
        ("1990-01-16", 35),  # tomorrow
        ("2008-02-29", 17),
        (None, None),
    ],
)
def test_age_is_whole_years_on_the_as_of_date(birthday: str | None, age: int | None) -> None:
    assert features_of(member_item(birthday=birthday), AS_OF, CONFIG).age == age


def test_a_leap_day_birthday_turns_a_year_older_on_the_first_of_march() -> None:
    item = member_item(birthday="2000-02-29")

    assert features_of(item, datetime(2025, 2, 28, tzinfo=UTC), CONFIG).age == 24
    assert features_of(item, datetime(2025, 3, 1, tzinfo=UTC), CONFIG).age == 25


def test_profile_consent_tier_and_balance_are_carried() -> None:
    item = member_item(
        tier="VIB",
        profile={"country": "FR", "email": "a@example.com"},
        consent={"email": True, "profiling": True},
        available=Decimal(120),
        lifetime_earned=Decimal(900),
        purchase_count=Decimal(14),
    )

    features = features_of(item, AS_OF, CONFIG)

    assert (features.tier, features.country) == ("VIB", "FR")
    assert features.consent.email and features.consent.profiling
    assert not (features.consent.sms or features.consent.push or features.consent.whatsapp)
    assert (features.available_points, features.lifetime_points, features.purchase_count) == (120, 900, 14)


def test_an_item_round_tripped_through_the_store_codec_gives_the_same_features() -> None:
    # Given the values the store writes (datetimes, dates, floats) encoded and decoded as DynamoDB would
    values = {
        "member_id": "m_2",
        "tier": "Rouge",
        "enrolled_at": datetime(2023, 5, 1, tzinfo=UTC),
        "birthday": date(1985, 7, 4),
        "profile": {"country": "US"},
        "consent": {"sms": True},
        "available": 10,
        "lifetime_earned": 40,
        "purchase_count": 3,
        "first_purchase_at": datetime(2025, 11, 2, 8, tzinfo=UTC),
        "last_purchase_at": datetime(2026, 1, 3, 18, tzinfo=UTC),
        "spend_by_month": {"2025-11": 12.5, "2026-01": 30},
        "purchases_by_month": {"2025-11": 1, "2026-01": 2},
        "points_by_month": {"2025-11": 12, "2026-01": 30},
    }
    stored = from_item(to_item(values))

    # When features are computed from the stored item and from the hand-written values
    from_store = features_of(stored, AS_OF, CONFIG)
    by_hand = features_of(values, AS_OF, CONFIG)

    # Then they agree
    assert from_store == by_hand
    assert from_store.monetary == Decimal("42.5")
    assert (from_store.recency_days, from_store.age, from_store.active_months_6m) == (12, 40, 2)


def test_as_of_without_a_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        features_of(member_item(), datetime(2026, 1, 15), CONFIG)


@pytest.mark.parametrize("key", ["2026-1", "2026-13", "26-01-01", "month"])
def test_a_malformed_month_key_is_an_error_not_a_silent_zero(key: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        features_of(member_item(points_by_month={key: Decimal(5)}), AS_OF, CONFIG)


# ---- category affinity ----------------------------------------------------------------------------------------


def test_category_fields_read_the_members_lifetime_category_map() -> None:
    # Given a member who spent 60 on makeup, 30 on skin care and 10 on fragrance (net, lifetime)
    item = member_item(
        spend_by_category={"makeup": Decimal("60.00"), "skin care": Decimal(30), "fragrance": Decimal(10)},
        spend_other_categories=Decimal(0),
    )

    features = features_of(item, AS_OF, CONFIG)

    # Then spend and share are read per category, and a category never bought is 0
    assert features.categories.spend_in("makeup") == Decimal("60.00")
    assert features.categories.share_of("makeup") == Decimal("0.6")
    assert features.categories.spend_in("hair") == 0
    assert features.categories.share_of("hair") == 0
    assert features.top_category == "makeup"


def test_a_member_with_no_categorised_spend_has_no_shares_and_no_top_category() -> None:
    for item in (
        member_item(),  # enrolled before the map existed
        member_item(spend_by_category={}, spend_other_categories=Decimal(0)),
        member_item(spend_by_category={"makeup": Decimal(0)}, spend_other_categories=Decimal(0)),  # refunded
    ):
        features = features_of(item, AS_OF, CONFIG)

        assert features.categories.spend_in("makeup") == 0
        assert features.categories.share_of("makeup") is None
        assert features.top_category is None


def test_equal_spend_makes_the_first_name_in_code_point_order_the_top_category() -> None:
    item = member_item(spend_by_category={"skin care": Decimal(40), "makeup": Decimal("40.0"), "hair": Decimal(5)})

    assert features_of(item, AS_OF, CONFIG).top_category == "makeup"


def test_past_the_bound_a_category_not_kept_by_name_is_unknown_not_zero() -> None:
    # Given a full map and 25 of categorised spend beyond its names
    kept = {f"c{i:02d}": Decimal(1) for i in range(49)} | {"makeup": Decimal(30)}
    item = member_item(spend_by_category=kept, spend_other_categories=Decimal(25))

    features = features_of(item, AS_OF, CONFIG)

    # Then a kept category is exact, its share counts the other bucket, and an unnamed one is missing
    assert features.categories.spend_in("makeup") == 30
    assert features.categories.share_of("makeup") == Decimal(30) / Decimal(49 + 30 + 25)
    assert features.categories.spend_in("hair") is None
    assert features.categories.share_of("hair") is None
    assert features.top_category == "makeup"  # no unnamed category can reach 30: they total 25


def test_the_top_category_is_unknown_when_the_unnamed_spend_could_beat_it() -> None:
    kept = {f"c{i:02d}": Decimal(1) for i in range(49)} | {"makeup": Decimal(30)}

    assert (
        features_of(member_item(spend_by_category=kept, spend_other_categories=Decimal(30)), AS_OF, CONFIG).top_category
        is None
    )


def test_category_spend_round_trips_through_the_store_codec() -> None:
    values = member_item(spend_by_category={"makeup": 12.5, "skin care": 30}, spend_other_categories=0)
    del values["available"], values["lifetime_earned"], values["purchase_count"]

    assert features_of(from_item(to_item(values)), AS_OF, CONFIG) == features_of(values, AS_OF, CONFIG)
