"""A member's segments as stable ids, and what entering and leaving looks like."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from loyalty.segments.assign import diff, segment_catalog, segments_of
from loyalty.segments.config import SegmentationConfig
from loyalty.segments.features import features_of
from loyalty.segments.rfm import RfmCutPoints, money_bucket
from loyalty.segments.rules import SegmentDefinition

AS_OF = datetime(2026, 3, 10, tzinfo=UTC)
# A population where 3+ purchases, 2 weeks' recency and 200.00 of spend are in the top quintiles
CUTS = RfmCutPoints(
    r=(14, 30, 90, 200),
    f=(0, 1, 1, 2),
    m=(money_bucket(20), money_bucket(50), money_bucket(90), money_bucket(150)),
)
WIN_BACK = SegmentDefinition.parse(
    {
        "segment_id": "win-back-fr",
        "name": "Win back, France",
        "rule": {
            "all": [{"field": "country", "op": "=", "value": "FR"}, {"field": "recency_days", "op": ">", "value": 60}]
        },
    }
)
CONFIG = SegmentationConfig(rule_segments=(WIN_BACK,))


def member_item(**fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "member_id": "m_1",
        "tier": "VIB",
        "enrolled_at": "2023-01-05T10:00:00.000000Z",
        "profile": {"country": "FR"},
        "consent": {"email": True, "profiling": True},  # behavioural segments need it: test_segments_consent.py
        "purchase_count": Decimal(0),
        "spend_by_month": {},
        "purchases_by_month": {},
        "points_by_month": {},
    }
    item.update(fields)
    return item


def regular_customer() -> dict[str, Any]:
    months = ["2025-10", "2025-11", "2025-12", "2026-01", "2026-02", "2026-03"]
    return member_item(
        first_purchase_at="2024-02-01T10:00:00Z",
        last_purchase_at="2026-03-05T10:00:00Z",
        purchase_count=Decimal(20),
        purchases_by_month={m: Decimal(1) for m in months},
        spend_by_month={m: Decimal("60.00") for m in months},
        points_by_month={m: Decimal(120) for m in months},
    )


def test_a_regular_big_spender_is_a_champion_high_spender_frequent_buyer_and_loyal() -> None:
    features = features_of(regular_customer(), AS_OF, CONFIG)

    assert segments_of(features, CUTS, CONFIG) == {
        "rfm:champions",
        "points:high-spenders",
        "points:frequent-buyers",
        "lifecycle:loyal",
    }


def test_a_member_who_never_bought_is_potential_and_has_no_rfm_segment() -> None:
    features = features_of(member_item(), AS_OF, CONFIG)

    assert segments_of(features, CUTS, CONFIG) == {"lifecycle:potential", "points:dormant"}


def test_without_cut_points_there_is_no_rfm_segment_but_everything_else_is_assigned() -> None:
    features = features_of(regular_customer(), AS_OF, CONFIG)

    found = segments_of(features, None, CONFIG)

    assert not any(s.startswith("rfm:") for s in found)
    assert "lifecycle:loyal" in found


def test_a_lapsed_french_member_enters_the_marketers_segment() -> None:
    item = member_item(
        first_purchase_at="2025-06-01T10:00:00Z",
        last_purchase_at="2025-11-20T10:00:00Z",
        purchase_count=Decimal(2),
        purchases_by_month={"2025-06": Decimal(1), "2025-11": Decimal(1)},
        spend_by_month={"2025-06": Decimal("15.00"), "2025-11": Decimal("15.00")},
        points_by_month={"2025-06": Decimal(15), "2025-11": Decimal(15)},
    )

    found = segments_of(features_of(item, AS_OF, CONFIG), CUTS, CONFIG)

    # recency 110 days: R2; F: 2 purchases -> 4, M: 30.00 -> 2, so FM 3: At Risk. Low points, quiet 90+ days: Dormant
    assert found == {"rfm:at-risk", "points:dormant", "lifecycle:occasional", "rule:win-back-fr"}


def test_diff_lists_segments_entered_and_left_in_a_stable_order() -> None:
    before = {"lifecycle:new", "points:occasional-shoppers", "rfm:promising"}
    after = {"lifecycle:loyal", "points:occasional-shoppers", "rfm:champions", "points:frequent-buyers"}

    entered, left = diff(before, after)

    assert entered == ("lifecycle:loyal", "points:frequent-buyers", "rfm:champions")
    assert left == ("lifecycle:new", "rfm:promising")
    assert diff(after, after) == ((), ())


def test_the_catalog_names_every_segment_a_member_can_be_given() -> None:
    catalog = segment_catalog(CONFIG)

    assert len(catalog) == len(set(catalog)) == 11 + 4 + 5 + 1 + 1  # prediction:churn-risk
    assert {"rfm:cant-lose-them", "points:dormant", "lifecycle:churning", "rule:win-back-fr"} <= set(catalog)
    features = features_of(regular_customer(), AS_OF, CONFIG)
    assert segments_of(features, CUTS, CONFIG) <= set(catalog)
