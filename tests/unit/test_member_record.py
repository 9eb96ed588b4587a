"""The member item's one codec (loyalty.points.member_record): months, reading an item, building one."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

from loyalty.points import member_record as record
from loyalty.points.members import Consent, Member, Profile

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
MEMBER = Member(
    member_id="m_1",
    external_id="ext-1",
    profile=Profile(country="FR"),
    consent=Consent(sms=True),
    birthday=date(1990, 6, 1),
    referral_code="AAAA-BBBB",
    tier="Insider",
    enrolled_at=NOW - timedelta(days=400),
)


def test_a_month_key_is_the_same_for_a_moment_its_utc_date_and_its_month_index() -> None:
    paris_new_year = datetime(2026, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))  # still December in UTC

    assert record.month_key(paris_new_year) == "2025-12"
    assert record.month_key(record.month_index(paris_new_year)) == "2025-12"
    assert record.month_key(date(2025, 12, 31)) == "2025-12"
    assert record.month_key(datetime(2025, 12, 31, 23, 59)) == "2025-12"  # naive: taken as UTC
    assert record.month_key(record.month_index(NOW) - 3) == record.months_before(NOW, 3) == "2025-12"


def test_the_monthly_maps_keep_the_current_month_and_the_23_before_it() -> None:
    assert record.is_kept(record.months_before(NOW, record.MONTHS_KEPT - 1), NOW)
    assert not record.is_kept(record.months_before(NOW, record.MONTHS_KEPT), NOW)


def test_an_enrolled_member_reads_back_as_the_member_with_nothing_bought() -> None:
    item = record.new_member_item(MEMBER)

    assert record.member_of(item) == MEMBER
    assert record.revision_of(item) == 1 and item[record.ROSTER_ID] == "m_1"
    assert record.aggregates_of(item) == record.PurchaseAggregates()
    assert not record.is_settled(item) and record.stored_segments(item) == frozenset()


def test_purchases_fill_the_aggregates_and_only_the_kept_months_of_the_maps() -> None:
    old = NOW - timedelta(days=800)  # before the kept months
    purchases = [
        record.PastPurchase(NOW - timedelta(days=2), Decimal("20.50"), 20),
        record.PastPurchase(old, Decimal("99"), 99),
        record.PastPurchase(NOW - timedelta(days=1), Decimal("5"), 5),
    ]

    item = record.with_purchases(record.new_member_item(MEMBER), purchases, NOW)
    bought = record.aggregates_of(item)

    assert bought.purchase_count == 3 and record.revision_of(item) == 4
    assert (bought.first_purchase_at, bought.last_purchase_at) == (old, NOW - timedelta(days=1))
    assert bought.spend_by_month == {"2026-03": Decimal("25.50")}
    assert bought.purchases_by_month == {"2026-03": 2} and bought.points_by_month == {"2026-03": 25}
    assert record.member_of(item).balance.lifetime_earned == record.member_of(item).balance.available == 124


def test_a_member_is_settled_when_its_segments_were_computed_from_its_revision() -> None:
    item = {record.REVISION: Decimal(3), record.SEGMENTS_REVISION: Decimal(3), record.SEGMENTS: ["rfm:new"]}

    assert record.is_settled(item) and record.stored_segments(item) == {"rfm:new"}
    assert not record.is_settled({**item, record.REVISION: Decimal(4)})


def test_the_first_purchase_is_read_back_only_when_it_is_the_one_at_first_purchase_at() -> None:
    old = NOW - timedelta(days=90)
    purchases = [
        record.PastPurchase(NOW - timedelta(days=2), Decimal("20.50"), 20, order_id="web-2"),
        record.PastPurchase(old, Decimal("99"), 99, order_id="web-1"),  # older, written later
    ]

    item = record.with_purchases(record.new_member_item(MEMBER), purchases, NOW)

    first = record.FirstPurchase(order_id="web-1", at=old, amount=Decimal(99))
    assert record.first_purchase_of(item) == record.aggregates_of(item).first_purchase == first
    refunded = {**item, record.FIRST_PURCHASE: {**item[record.FIRST_PURCHASE], "amount": 0, "refunded": True}}
    assert record.first_purchase_of(refunded) == record.FirstPurchase("web-1", old, Decimal(0), refunded=True)
    # An item from before the record was kept: none, or one its next purchase wrote of itself
    unrecorded = {name: value for name, value in item.items() if name != record.FIRST_PURCHASE}
    of_another = {**item, record.FIRST_PURCHASE: record.first_purchase_record("web-2", NOW, Decimal("20.50"))}
    assert record.first_purchase_of(unrecorded) is None and record.first_purchase_of(of_another) is None
