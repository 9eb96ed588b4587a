"""The ledger against real DynamoDB semantics: earn, redeem, refund, adjust, page; every write idempotent, every
refusal leaving the table exactly as it was. Each test runs on moto in-process and on DynamoDB Local. Rules of the
service that no DynamoDB behaviour bears on (a currency or date refused, a key required, the catalog's cache) are
tested on the in-memory store, in tests/unit/test_points_service.py."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from loyalty.adapters.dynamodb.points_store import month_key
from loyalty.core.errors import (
    IdempotencyKeyReused,
    InvalidRequest,
    MemberNotFound,
    OrderConflict,
    OrderNotFound,
)
from loyalty.core.idempotency import Outcome
from loyalty.core.instants import timestamp
from loyalty.points.activities import Adjustment, LineItem, Purchase, Refund
from loyalty.points.ledger import EntryKind
from loyalty.points.program import ProgramConfig
from loyalty.points.rewards import Reward, RewardKind
from tests.integration.conftest import Loyalty

VOUCHER = re.compile(r"^[2-9A-HJKMNP-TV-Z]{4}-[2-9A-HJKMNP-TV-Z]{4}-[2-9A-HJKMNP-TV-Z]{4}$")
UNKNOWN_MEMBER = "m_01jzzzzzzzzzzzzzzzzzzzzzzz"


def refund(loyalty: Loyalty, order_id: str, amount: str, refund_id: str) -> Outcome:
    return loyalty.service.refund(Refund(order_id=order_id, refund_id=refund_id, amount=Decimal(amount)))


def adjust(loyalty: Loyalty, member_id: str, points: int, key: str) -> Outcome:
    return loyalty.service.record(member_id, Adjustment(points=points, reason="goodwill correction"), key)


# ---- purchases ------------------------------------------------------------------------------------------------


def test_a_purchase_credits_its_points_with_a_ledger_entry_and_an_order(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()

    outcome = loyalty.buy(member_id, "120.50", order_id="web-5531")

    assert (outcome.status, outcome.replayed) == (201, False)
    assert outcome.body["entry"]["points"] == 120
    assert outcome.body["entry"]["kind"] == "earn"
    assert loyalty.available(member_id) == 120
    [entry] = loyalty.ledger(member_id)
    assert (entry.kind, entry.points, entry.order_id) == (EntryKind.EARN, 120, "web-5531")
    order = loyalty.item("ORDER#web-5531", "ORDER")
    assert order is not None
    assert (order["member_id"], order["amount"], order["points"]) == (member_id, Decimal("120.5"), 120)
    loyalty.assert_ledger_is_true(member_id)


def test_replaying_a_purchase_returns_the_first_answer_and_changes_nothing(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()
    first = loyalty.buy(member_id, "42.00", order_id="web-1")
    member_before = loyalty.member_item(member_id)

    replay = loyalty.buy(member_id, "42.00", order_id="web-1")

    assert replay.replayed
    assert (replay.status, replay.body) == (first.status, first.body)
    assert loyalty.member_item(member_id) == member_before  # balance, counters and aggregates untouched
    assert len(loyalty.ledger(member_id)) == 1


def test_the_same_order_id_with_another_amount_is_a_conflict(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()
    loyalty.buy(member_id, "42.00", order_id="web-1")
    before = loyalty.all_items()

    with pytest.raises(OrderConflict) as conflict:
        loyalty.buy(member_id, "43.00", order_id="web-1")

    assert conflict.value.field == "order_id"
    assert conflict.value.status == 409
    assert loyalty.all_items() == before


def test_the_same_order_id_for_another_member_is_a_conflict(loyalty: Loyalty) -> None:
    first, second = loyalty.enroll(), loyalty.enroll()
    loyalty.buy(first, "42.00", order_id="web-1")

    with pytest.raises(OrderConflict):
        loyalty.buy(second, "42.00", order_id="web-1")

    assert loyalty.available(second) == 0


def test_the_same_order_with_the_amount_written_differently_is_a_replay(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()
    first = loyalty.buy(member_id, "42", order_id="web-1")

    replay = loyalty.buy(member_id, "42.00", order_id="web-1")

    assert replay.replayed
    assert replay.body == first.body


def test_a_purchase_for_an_unknown_member_is_not_found_and_writes_nothing(loyalty: Loyalty) -> None:
    before = loyalty.all_items()

    with pytest.raises(MemberNotFound) as missing:
        loyalty.buy(UNKNOWN_MEMBER, "10.00", order_id="web-ghost")

    assert missing.value.status == 404
    assert loyalty.all_items() == before  # no ledger entry, no order item, no claim, no member
    assert loyalty.item("ORDER#web-ghost", "ORDER") is None


@pytest.mark.parametrize(
    "occurred_at",
    [datetime(999, 12, 31, tzinfo=UTC), datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))],
    ids=["year-999", "year-1-plus-one-hour"],
)
def test_a_purchase_dated_before_any_plausible_order_is_refused_and_the_member_stays_readable(
    loyalty: Loyalty, occurred_at: datetime
) -> None:
    member_id = loyalty.enroll()
    refused: InvalidRequest | None = None
    try:
        loyalty.buy(member_id, "10.00", occurred_at=occurred_at)
    except InvalidRequest as error:
        refused = error

    assert loyalty.service.member(member_id).member_id == member_id
    assert refused is not None
    assert refused.field == "occurred_at"


def test_a_program_stored_in_the_table_changes_earning_without_a_deploy(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()
    loyalty.store.put_program(
        ProgramConfig(
            version=2,
            points_per_unit={"USD": Decimal(2), "EUR": Decimal("1.5")},
            exchange_rates={"EUR": Decimal("1.08")},
            category_multipliers={"skincare": Decimal(3)},
        ),
        replaces=None,
    )

    usd = loyalty.buy(member_id, "10.00")
    eur = loyalty.buy(member_id, "10.00", currency="EUR")
    lines = loyalty.service.purchase(
        member_id,
        Purchase(
            order_id="web-lines",
            amount=Decimal("10"),
            currency="USD",
            line_items=(LineItem(category="skincare", amount=Decimal("4")),),
        ),
    )

    assert (usd.body["entry"]["points"], eur.body["entry"]["points"]) == (20, 15)
    assert lines.body["entry"]["points"] == 36  # (10 + 4 x 2) x 2
    assert loyalty.available(member_id) == 71
    spend = loyalty.member_item(member_id)["spend_by_month"]
    assert sum(spend.values()) == Decimal("30.8")  # the 10 EUR as 10.80 USD, never summed as 10


# ---- write-time aggregates ----------------------------------------------------------------------------------


def test_purchases_keep_the_members_monthly_aggregates_at_write_time(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()
    now = datetime.now(UTC)
    purchases = [("40.00", now - timedelta(days=62)), ("25.50", now - timedelta(days=1)), ("10.99", now)]

    for amount, at in purchases:
        loyalty.buy(member_id, amount, occurred_at=at)

    member = loyalty.member_item(member_id)
    spend: Counter[str] = Counter()
    count: Counter[str] = Counter()
    points: Counter[str] = Counter()
    for amount, at in purchases:
        spend[month_key(at)] += Decimal(amount)
        count[month_key(at)] += 1
        points[month_key(at)] += int(Decimal(amount))
    assert member["spend_by_month"] == dict(spend)
    assert member["purchases_by_month"] == dict(count)
    assert member["points_by_month"] == dict(points)
    assert member["purchase_count"] == 3
    assert member["first_purchase_at"] == timestamp(purchases[0][1])
    assert member["last_purchase_at"] == timestamp(purchases[2][1])
    stats = loyalty.service.member(member_id).purchases
    assert (stats.purchase_count, stats.first_purchase_at, stats.last_purchase_at) == (3, purchases[0][1], now)


def test_an_older_purchase_arriving_late_moves_the_first_purchase_back_but_not_the_last(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()
    now = datetime.now(UTC)
    newer, oldest = now - timedelta(days=2), now - timedelta(days=100)
    loyalty.buy(member_id, "30.00", occurred_at=newer)

    loyalty.buy(member_id, "20.00", occurred_at=oldest)  # an event that was delayed

    member = loyalty.member_item(member_id)
    assert member["last_purchase_at"] == timestamp(newer)
    assert member["first_purchase_at"] == timestamp(oldest)
    assert member["purchase_count"] == 2
    assert member["purchases_by_month"][month_key(oldest)] == 1
    assert member["spend_by_month"][month_key(oldest)] == Decimal("20")
    assert int(member["available"]) == 50
    loyalty.assert_ledger_is_true(member_id)


def test_a_late_purchase_dated_between_the_first_and_the_last_is_counted(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()
    now = datetime.now(UTC)
    oldest, middle, newest = now - timedelta(days=100), now - timedelta(days=40), now - timedelta(days=2)
    loyalty.buy(member_id, "20.00", occurred_at=oldest)
    loyalty.buy(member_id, "30.00", occurred_at=newest)

    loyalty.buy(member_id, "10.00", occurred_at=middle)

    member = loyalty.member_item(member_id)
    assert (member["first_purchase_at"], member["last_purchase_at"]) == (timestamp(oldest), timestamp(newest))
    assert member["purchase_count"] == 3
    assert int(member["available"]) == 60


def test_a_refund_takes_its_spend_and_points_from_the_original_orders_month(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()
    placed = datetime.now(UTC) - timedelta(days=70)
    loyalty.buy(member_id, "80.00", order_id="web-old", occurred_at=placed)
    loyalty.buy(member_id, "5.00")  # this month

    refund(loyalty, "web-old", "30.00", "rf-1")

    member = loyalty.member_item(member_id)
    assert member_key_months_differ(placed)
    assert member["spend_by_month"][month_key(placed)] == Decimal("50")
    assert member["points_by_month"][month_key(placed)] == 50
    assert member["spend_by_month"][month_key(datetime.now(UTC))] == Decimal("5")
    assert member["purchases_by_month"][month_key(placed)] == 1  # a partial refund is not an un-purchase
    loyalty.assert_ledger_is_true(member_id)


def test_the_refund_that_completes_the_first_order_takes_it_out_of_the_counts(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()
    placed = datetime.now(UTC) - timedelta(days=70)
    loyalty.buy(member_id, "80.00", order_id="web-old", occurred_at=placed)
    loyalty.buy(member_id, "5.00")  # this month

    refund(loyalty, "web-old", "30.00", "rf-1")
    after_part = loyalty.member_item(member_id)
    refund(loyalty, "web-old", "50.00", "rf-2")

    assert (after_part["purchase_count"], after_part["first_purchase"]["amount"]) == (2, Decimal(50))
    member = loyalty.member_item(member_id)
    assert member["purchase_count"] == 1
    assert member["purchases_by_month"][month_key(placed)] == 0
    assert member["spend_by_month"][month_key(placed)] == 0
    assert member["first_purchase"] == {
        "order_id": "web-old",
        "at": timestamp(placed),
        "amount": Decimal(0),
        "refunded": True,
    }
    assert member["first_purchase_at"] == timestamp(placed)  # the moment stays (docs/ledger.md)
    loyalty.assert_ledger_is_true(member_id)


def member_key_months_differ(placed: datetime) -> bool:
    return month_key(placed) != month_key(datetime.now(UTC))


def test_engagement_bonuses_count_in_the_months_points(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()
    loyalty.buy(member_id, "10.00")

    loyalty.review(member_id)

    member = loyalty.member_item(member_id)
    assert member["points_by_month"][month_key(datetime.now(UTC))] == 10 + 50
    assert member["spend_by_month"][month_key(datetime.now(UTC))] == Decimal("10")
    assert member["purchase_count"] == 1  # a review is not a purchase


# ---- redemptions --------------------------------------------------------------------------------------------


def test_a_redemption_debits_the_cost_and_returns_a_voucher(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()
    loyalty.buy(member_id, "150.00")

    outcome = loyalty.service.redeem(member_id, "sample-trio", "redeem-1")

    assert outcome.status == 201
    assert VOUCHER.match(outcome.body["voucher_code"])
    assert outcome.body["reward"]["reward_id"] == "sample-trio"
    assert loyalty.available(member_id) == 50
    redemption = next(e for e in loyalty.ledger(member_id) if e.kind is EntryKind.REDEEM)
    assert (redemption.points, redemption.voucher_code) == (-100, outcome.body["voucher_code"])
    assert int(loyalty.member_item(member_id)["redeemed"]) == 100
    loyalty.assert_ledger_is_true(member_id)


def test_replaying_a_redemption_returns_the_same_voucher_and_debits_once(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()
    loyalty.buy(member_id, "250.00")
    first = loyalty.service.redeem(member_id, "sample-trio", "redeem-1")

    replays = [loyalty.service.redeem(member_id, "sample-trio", "redeem-1") for _ in range(3)]

    assert all(r.replayed and r.body == first.body for r in replays)
    assert loyalty.available(member_id) == 150
    assert [e.kind for e in loyalty.ledger(member_id)].count(EntryKind.REDEEM) == 1


def test_a_replay_is_answered_even_when_the_balance_no_longer_covers_the_reward(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()
    loyalty.buy(member_id, "100.00")
    first = loyalty.service.redeem(member_id, "sample-trio", "redeem-1")  # balance now 0

    replay = loyalty.service.redeem(member_id, "sample-trio", "redeem-1")

    assert replay.replayed
    assert replay.body == first.body


def test_the_same_idempotency_key_for_another_reward_is_refused(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()
    loyalty.buy(member_id, "250.00")
    loyalty.service.redeem(member_id, "sample-trio", "redeem-1")
    before = loyalty.all_items()

    with pytest.raises(IdempotencyKeyReused) as reused:
        loyalty.service.redeem(member_id, "ten-points", "redeem-1")

    assert reused.value.field == "Idempotency-Key"
    assert loyalty.all_items() == before


def test_the_same_idempotency_key_is_scoped_to_its_member(loyalty: Loyalty) -> None:
    first, second = loyalty.enroll(), loyalty.enroll()
    loyalty.buy(first, "100.00")
    loyalty.buy(second, "100.00")

    a = loyalty.service.redeem(first, "ten-points", "redeem-1")
    b = loyalty.service.redeem(second, "ten-points", "redeem-1")

    assert not b.replayed
    assert a.body["voucher_code"] != b.body["voucher_code"]
    assert loyalty.available(first) == loyalty.available(second) == 90


def remembered_claims(loyalty: Loyalty, before: list[dict[str, object]]) -> list[dict[str, object]]:
    """The items written since `before`: a refusal may write its remembered answer, and nothing else."""
    added = [item for item in loyalty.all_items() if item not in before]
    assert all(str(item["PK"]).startswith("IDEMPOTENCY#") for item in added), added
    return added


def test_a_redemption_the_balance_does_not_cover_is_refused_and_only_the_refusal_is_written(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()
    loyalty.buy(member_id, "99.99")
    member_before = loyalty.member_item(member_id)
    before = loyalty.all_items()

    refused = loyalty.service.redeem(member_id, "sample-trio", "redeem-1")

    assert (refused.status, refused.replayed) == (409, False)
    assert refused.body["code"] == "insufficient_points"
    assert (refused.body["available"], refused.body["needed"]) == (99, 100)
    assert loyalty.member_item(member_id) == member_before
    [claim] = remembered_claims(loyalty, before)
    assert claim["PK"] == f"IDEMPOTENCY#redeem:{member_id}:redeem-1"


def test_a_refused_redemption_replays_as_the_same_refusal_after_the_member_earns_more(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()
    loyalty.buy(member_id, "50.00")
    first = loyalty.service.redeem(member_id, "sample-trio", "redeem-1")
    loyalty.buy(member_id, "500.00")  # now the member could afford it
    member_before = loyalty.member_item(member_id)

    replays = [loyalty.service.redeem(member_id, "sample-trio", "redeem-1") for _ in range(3)]
    fresh = loyalty.service.redeem(member_id, "sample-trio", "redeem-2")

    assert first.status == 409
    assert all((r.status, r.body, r.replayed) == (409, first.body, True) for r in replays)
    assert first.body["available"] == 50  # the first answer, not today's balance
    assert fresh.status == 201  # a new key is a new request, judged now
    assert loyalty.available(member_id) == int(member_before["available"]) - 100
    loyalty.assert_ledger_is_true(member_id)


def test_a_refusals_key_reused_for_another_request_is_refused_as_reused(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()
    loyalty.service.redeem(member_id, "sample-trio", "redeem-1")  # refused: 0 points

    with pytest.raises(IdempotencyKeyReused):
        loyalty.service.redeem(member_id, "ten-points", "redeem-1")


def test_an_unknown_reward_is_not_found_and_the_answer_is_remembered(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()
    loyalty.buy(member_id, "100.00")

    refused = loyalty.service.redeem(member_id, "no-such-reward", "redeem-1")
    loyalty.store.put_reward(
        Reward(reward_id="no-such-reward", name="Late treat", kind=RewardKind.FREE_PRODUCT, cost_points=10)
    )
    loyalty.service.catalog.clear()
    replay = loyalty.service.redeem(member_id, "no-such-reward", "redeem-1")

    assert (refused.status, refused.body["code"], refused.body["errors"][0]["field"]) == (
        404,
        "reward_not_found",
        "reward_id",
    )
    assert (replay.status, replay.body, replay.replayed) == (404, refused.body, True)
    assert loyalty.available(member_id) == 100


def test_a_redemption_for_an_unknown_member_is_not_found(loyalty: Loyalty) -> None:
    before = loyalty.all_items()

    with pytest.raises(MemberNotFound):
        loyalty.service.redeem(UNKNOWN_MEMBER, "ten-points", "redeem-1")

    assert loyalty.all_items() == before


# ---- refunds --------------------------------------------------------------------------------------------------


def test_partial_refunds_in_several_steps_reverse_exactly_the_orders_points(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()
    loyalty.buy(member_id, "99.99", order_id="web-1")  # 99 points
    loyalty.review(member_id)  # 50 points that no refund may touch

    dues = [
        refund(loyalty, "web-1", amount, f"rf-{i}").body["points_due"]
        for i, amount in enumerate(["10.00", "33.33", "0.01", "56.65"])
    ]

    assert sum(dues) == 99
    assert all(due >= 0 for due in dues)
    assert loyalty.available(member_id) == 50
    order = loyalty.item("ORDER#web-1", "ORDER")
    assert order is not None
    assert (order["refunded_amount"], order["reversal_due"]) == (Decimal("99.99"), 99)
    assert int(loyalty.member_item(member_id)["reversed"]) == 99
    loyalty.assert_ledger_is_true(member_id)


def test_a_refund_after_the_points_were_spent_takes_only_what_is_available(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()
    loyalty.buy(member_id, "150.00", order_id="web-1")
    loyalty.service.redeem(member_id, "sample-trio", "redeem-1")  # 50 left

    outcome = refund(loyalty, "web-1", "150.00", "rf-1")

    assert (outcome.body["points_due"], outcome.body["points_reversed"], outcome.body["points_unrecovered"]) == (
        150,
        50,
        100,
    )
    assert outcome.body["entry"]["points"] == -50
    assert outcome.body["entry"]["unrecovered"] == 100
    member = loyalty.member_item(member_id)
    assert (int(member["available"]), int(member["unrecovered"]), int(member["reversed"])) == (0, 100, 50)
    loyalty.assert_ledger_is_true(member_id)


def test_a_refund_when_nothing_is_left_reverses_nothing_and_records_it_all_as_unrecovered(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()
    loyalty.buy(member_id, "100.00", order_id="web-1")
    loyalty.service.redeem(member_id, "sample-trio", "redeem-1")  # 0 left

    outcome = refund(loyalty, "web-1", "40.00", "rf-1")

    assert (outcome.body["points_reversed"], outcome.body["points_unrecovered"]) == (0, 40)
    assert loyalty.available(member_id) == 0
    loyalty.assert_ledger_is_true(member_id)


def test_refunding_more_than_is_left_on_the_order_is_refused_and_only_the_refusal_is_written(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()
    loyalty.buy(member_id, "50.00", order_id="web-1")
    refund(loyalty, "web-1", "30.00", "rf-1")
    member_before = loyalty.member_item(member_id)
    before = loyalty.all_items()

    refused = refund(loyalty, "web-1", "20.01", "rf-2")
    replay = refund(loyalty, "web-1", "20.01", "rf-2")

    assert (refused.status, refused.body["code"]) == (409, "refund_exceeds_order")
    assert refused.body["errors"] == [{"field": "amount", "reason": refused.body["message"]}]
    assert refused.body["refundable"] == {"amount": "20", "currency": "USD"}
    assert (replay.status, replay.body, replay.replayed) == (409, refused.body, True)
    assert loyalty.member_item(member_id) == member_before
    [claim] = remembered_claims(loyalty, before)
    assert "expires_at" not in claim  # a refund's identity is kept as long as its order


def test_a_refund_id_is_the_refunds_identity_through_either_door(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()
    loyalty.buy(member_id, "50.00", order_id="web-1")
    activity = Refund(order_id="web-1", refund_id="rf-1", amount=Decimal("10"))

    through_api = loyalty.service.record(member_id, activity, "some-unrelated-header-key")
    through_event = loyalty.service.refund(activity)

    assert through_event.replayed
    assert through_event.body == through_api.body
    assert loyalty.available(member_id) == 40
    claim = loyalty.item("IDEMPOTENCY#refund:web-1:rf-1", "IDEMPOTENCY")
    assert claim is not None and "expires_at" not in claim


def test_replaying_a_refund_returns_the_first_answer_and_reverses_once(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()
    loyalty.buy(member_id, "50.00", order_id="web-1")
    first = refund(loyalty, "web-1", "20.00", "rf-1")
    member_before = loyalty.member_item(member_id)

    replay = refund(loyalty, "web-1", "20.00", "rf-1")

    assert replay.replayed
    assert (replay.status, replay.body) == (first.status, first.body)
    assert loyalty.member_item(member_id) == member_before
    assert [e.kind for e in loyalty.ledger(member_id)].count(EntryKind.REVERSAL) == 1


def test_the_same_refund_id_with_another_amount_is_refused(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()
    loyalty.buy(member_id, "50.00", order_id="web-1")
    refund(loyalty, "web-1", "20.00", "rf-1")

    with pytest.raises(IdempotencyKeyReused):
        refund(loyalty, "web-1", "25.00", "rf-1")

    assert loyalty.available(member_id) == 30


def test_a_refund_for_an_order_the_ledger_has_not_seen_is_not_found(loyalty: Loyalty) -> None:
    loyalty.enroll()
    before = loyalty.all_items()

    with pytest.raises(OrderNotFound) as missing:
        refund(loyalty, "web-never", "10.00", "rf-1")

    assert missing.value.status == 404
    assert loyalty.all_items() == before


def test_a_refund_recorded_against_another_members_order_is_not_found(loyalty: Loyalty) -> None:
    owner, other = loyalty.enroll(), loyalty.enroll()
    loyalty.buy(owner, "50.00", order_id="web-1")

    with pytest.raises(OrderNotFound):
        loyalty.service.record(other, Refund(order_id="web-1", refund_id="rf-1", amount=Decimal("10")), None)

    assert loyalty.available(owner) == 50


# ---- adjustments -------------------------------------------------------------------------------------------


def test_positive_and_negative_adjustments_move_the_balance_with_a_reason(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()

    up = adjust(loyalty, member_id, 25, "adj-1")
    down = adjust(loyalty, member_id, -10, "adj-2")

    assert (up.body["entry"]["points"], down.body["entry"]["points"]) == (25, -10)
    assert up.body["entry"]["reason"] == "goodwill correction"
    member = loyalty.member_item(member_id)
    assert (int(member["available"]), int(member["lifetime_earned"]), int(member["reversed"])) == (15, 25, 10)
    loyalty.assert_ledger_is_true(member_id)


def test_a_negative_adjustment_beyond_the_balance_is_refused(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()
    adjust(loyalty, member_id, 25, "adj-1")
    before = loyalty.all_items()

    refused = adjust(loyalty, member_id, -26, "adj-2")
    written = remembered_claims(loyalty, before)
    loyalty.buy(member_id, "10.00")
    replay = adjust(loyalty, member_id, -26, "adj-2")

    assert (refused.status, refused.body["code"]) == (409, "insufficient_points")
    assert (replay.status, replay.body, replay.replayed) == (409, refused.body, True)
    assert loyalty.available(member_id) == 35
    assert [e.kind for e in loyalty.ledger(member_id)].count(EntryKind.ADJUSTMENT) == 1
    assert len(written) == 1


def test_an_adjustment_is_idempotent_by_its_key(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()
    first = adjust(loyalty, member_id, 25, "adj-1")

    replay = adjust(loyalty, member_id, 25, "adj-1")

    assert replay.replayed
    assert replay.body == first.body
    assert loyalty.available(member_id) == 25
    with pytest.raises(IdempotencyKeyReused):
        adjust(loyalty, member_id, 26, "adj-1")


# ---- the ledger, page by page ----------------------------------------------------------------------------


def test_sixty_entries_page_newest_first_and_the_cursor_chain_covers_each_once(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()
    for i in range(60):
        loyalty.review(member_id, key=f"review-{i}")
    written = [e.entry_id for e in loyalty.ledger(member_id)]

    pages: list[list[str]] = []
    cursor: str | None = None
    for _ in range(10):
        page = loyalty.service.ledger(member_id, 25, cursor)
        pages.append([entry["entry_id"] for entry in page["entries"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert [len(p) for p in pages] == [25, 25, 10]
    read = [entry_id for page in pages for entry_id in page]
    assert read == sorted(written, reverse=True)  # newest first, across page boundaries
    assert len(set(read)) == 60


def test_another_members_cursor_only_ever_returns_this_members_entries(loyalty: Loyalty) -> None:
    alice, bob = loyalty.enroll(), loyalty.enroll()
    for i in range(6):  # interleaved, so Bob has entries on both sides of any position in Alice's ledger
        loyalty.review(alice, key=f"a-{i}")
        loyalty.review(bob, key=f"b-{i}")
    alice_page = loyalty.service.ledger(alice, 3, None)
    alices_cursor = alice_page["next_cursor"]
    assert alices_cursor is not None
    position = alice_page["entries"][-1]["entry_id"]

    page = loyalty.service.ledger(bob, 25, alices_cursor)

    # Not refused (docs/data-model.md says it would be): the cursor carries only a position, which is read inside
    # Bob's own partition, so Bob gets his entries older than that position and never one of Alice's.
    bobs = {e.entry_id for e in loyalty.ledger(bob)}
    alices = {e.entry_id for e in loyalty.ledger(alice)}
    returned = [entry["entry_id"] for entry in page["entries"]]
    assert {entry["member_id"] for entry in page["entries"]} == {bob}
    assert not set(returned) & alices
    assert returned == sorted((e for e in bobs if e < position), reverse=True)


def test_a_forged_cursor_is_refused_with_the_field(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()

    with pytest.raises(InvalidRequest) as refused:
        loyalty.service.ledger(member_id, 25, "bm90IGEgY3Vyc29y")

    assert refused.value.field == "cursor"


def test_the_ledger_of_an_unknown_member_is_not_found_rather_than_empty(loyalty: Loyalty) -> None:
    with pytest.raises(MemberNotFound):
        loyalty.service.ledger(UNKNOWN_MEMBER, 25, None)
