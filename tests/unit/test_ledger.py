"""The ledger's pure rules: how refunds take back points, and how each entry moves the balance counters."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loyalty.core.errors import RefundExceedsOrder
from loyalty.core.events import EventType
from loyalty.points.ledger import EVENT_OF_KIND, Balance, EntryKind, LedgerEntry, OrderRecord, plan_refund

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def order(amount: str, points: int, *, refunded: str = "0", due_so_far: int = 0) -> OrderRecord:
    return OrderRecord(
        order_id="o-1",
        member_id="m_1",
        amount=Decimal(amount),
        currency="USD",
        points=points,
        occurred_at=NOW,
        refunded_amount=Decimal(refunded),
        reversal_due=due_so_far,
    )


def after(record: OrderRecord, amount: Decimal, due: int) -> OrderRecord:
    """The order as the store leaves it once a refund is applied."""
    return record.model_copy(
        update={"refunded_amount": record.refunded_amount + amount, "reversal_due": record.reversal_due + due}
    )


# ---- plan_refund ---------------------------------------------------------------------------------------------


def test_a_full_refund_takes_back_exactly_what_the_order_earned() -> None:
    plan = plan_refund(order("120.50", 120), Decimal("120.50"), available=500)

    assert (plan.due, plan.reverse, plan.unrecovered) == (120, 120, 0)


def test_partial_refunds_take_back_the_share_on_the_running_total() -> None:
    record = order("10", 10)
    first = plan_refund(record, Decimal("3.33"), available=100)
    record = after(record, Decimal("3.33"), first.due)
    second = plan_refund(record, Decimal("3.33"), available=100)
    record = after(record, Decimal("3.33"), second.due)
    last = plan_refund(record, Decimal("3.34"), available=100)

    # floor(3.33) = 3, floor(6.66) - 3 = 3, 10 - 6 = 4: never a point lost or taken twice to rounding.
    assert [first.due, second.due, last.due] == [3, 3, 4]


def test_a_refund_after_the_points_were_spent_takes_what_is_available_and_records_the_rest() -> None:
    plan = plan_refund(order("100", 100), Decimal("100"), available=30)

    assert (plan.due, plan.reverse, plan.unrecovered) == (100, 30, 70)


def test_a_refund_never_takes_from_a_balance_that_is_already_zero_or_less() -> None:
    assert plan_refund(order("100", 100), Decimal("50"), available=0).reverse == 0
    assert plan_refund(order("100", 100), Decimal("50"), available=-5).reverse == 0


def test_refunding_more_than_is_left_on_the_order_is_refused_with_the_field() -> None:
    record = order("100", 100, refunded="60", due_so_far=60)

    assert plan_refund(record, Decimal("40"), available=100).due == 40
    with pytest.raises(RefundExceedsOrder) as refused:
        plan_refund(record, Decimal("40.01"), available=100)
    assert refused.value.field == "amount"
    assert refused.value.status == 409
    assert refused.value.body()["refundable"] == {"amount": "40", "currency": "USD"}


def test_an_order_that_earned_nothing_reverses_nothing() -> None:
    plan = plan_refund(order("0.99", 0), Decimal("0.99"), available=10)

    assert (plan.due, plan.reverse, plan.unrecovered) == (0, 0, 0)


@st.composite
def split_orders(draw: st.DrawFn) -> tuple[Decimal, int, list[Decimal], list[int]]:
    """An order (amount in cents, points), its amount split into refunds, and the balance at each refund."""
    cents = draw(st.integers(min_value=1, max_value=10_000_000))
    points = draw(st.integers(min_value=0, max_value=20_000))
    cuts = sorted(draw(st.sets(st.integers(min_value=1, max_value=cents - 1), max_size=12))) if cents > 1 else []
    bounds = [0, *cuts, cents]
    parts = [Decimal(b - a) / 100 for a, b in itertools.pairwise(bounds)]
    balances = draw(st.lists(st.integers(min_value=-10, max_value=30_000), min_size=len(parts), max_size=len(parts)))
    return Decimal(cents) / 100, points, parts, balances


@given(split_orders())
@settings(max_examples=300, database=None)
def test_however_an_order_is_refunded_in_parts_the_parts_take_back_exactly_its_points(
    case: tuple[Decimal, int, list[Decimal], list[int]],
) -> None:
    amount, points, parts, balances = case
    record = order(str(amount), points)
    dues = []
    for part, available in zip(parts, balances, strict=True):
        plan = plan_refund(record, part, available)
        assert plan.due >= 0
        assert 0 <= plan.reverse <= max(available, 0)
        assert plan.reverse + plan.unrecovered == plan.due
        dues.append(plan.due)
        assert sum(dues) <= points  # never one point more than the order earned, at any step
        record = after(record, part, plan.due)

    assert sum(dues) == points
    assert record.refunded_amount == amount


@given(
    amount=st.integers(min_value=1, max_value=1_000_000),
    points=st.integers(min_value=0, max_value=10_000),
    refunded=st.integers(min_value=0, max_value=1_000_000),
    extra=st.integers(min_value=1, max_value=1000),
    available=st.integers(min_value=-100, max_value=100_000),
)
@settings(max_examples=200, database=None)
def test_a_refund_beyond_what_is_left_is_always_refused(
    amount: int, points: int, refunded: int, extra: int, available: int
) -> None:
    refunded = min(refunded, amount)
    record = order(str(Decimal(amount) / 100), points, refunded=str(Decimal(refunded) / 100))
    too_much = Decimal(amount - refunded + extra) / 100

    with pytest.raises(RefundExceedsOrder) as refused:
        plan_refund(record, too_much, available)
    assert refused.value.field == "amount"


# ---- entries and the counters they move ------------------------------------------------------------------


def entry(kind: EntryKind, points: int, unrecovered: int = 0) -> LedgerEntry:
    return LedgerEntry(
        entry_id="01J0000000000000000000000",
        member_id="m_1",
        kind=kind,
        points=points,
        created_at=NOW,
        unrecovered=unrecovered,
    )


def apply(balance: dict[str, int], counters: dict[str, int]) -> None:
    for name, delta in counters.items():
        balance[name] = balance.get(name, 0) + delta


def identity_holds(b: dict[str, int]) -> bool:
    return b.get("available", 0) + b.get("pending", 0) == (
        b.get("lifetime_earned", 0) - b.get("redeemed", 0) - b.get("reversed", 0) - b.get("expired", 0)
    )


@pytest.mark.parametrize("kind", list(EntryKind))
@pytest.mark.parametrize("points", [-7, 0, 7])
def test_every_entry_kind_and_sign_keeps_the_balance_identity(kind: EntryKind, points: int) -> None:
    counters = entry(kind, points).counters()
    balance: dict[str, int] = {}
    apply(balance, counters)

    assert counters["available"] == points  # the balance moves by exactly the entry's points
    assert identity_holds(balance)
    assert set(counters) <= set(Balance.model_fields)


@pytest.mark.parametrize(
    ("kind", "points", "expected"),
    [
        (EntryKind.EARN, 10, {"available": 10, "lifetime_earned": 10}),
        (EntryKind.BONUS, 50, {"available": 50, "lifetime_earned": 50}),
        (EntryKind.ADJUSTMENT, 25, {"available": 25, "lifetime_earned": 25}),
        (EntryKind.REDEEM, -100, {"available": -100, "redeemed": 100}),
        (EntryKind.REVERSAL, -30, {"available": -30, "reversed": 30}),
        (EntryKind.ADJUSTMENT, -5, {"available": -5, "reversed": 5}),
        (EntryKind.EXPIRY, -12, {"available": -12, "expired": 12}),
    ],
)
def test_each_kind_moves_the_counters_the_ledger_notes_name(
    kind: EntryKind, points: int, expected: dict[str, int]
) -> None:
    assert entry(kind, points).counters() == expected


def test_a_reversal_that_could_not_take_everything_counts_the_rest_as_unrecovered() -> None:
    counters = entry(EntryKind.REVERSAL, -30, unrecovered=70).counters()

    assert counters == {"available": -30, "reversed": 30, "unrecovered": 70}


entries = st.builds(
    entry,
    kind=st.sampled_from(list(EntryKind)),
    points=st.integers(min_value=-10_000, max_value=10_000),
    unrecovered=st.integers(min_value=0, max_value=1000),
)


@given(st.lists(entries, max_size=60))
@settings(max_examples=300, database=None)
def test_summed_counters_of_any_entry_sequence_keep_the_identity(sequence: list[LedgerEntry]) -> None:
    balance: dict[str, int] = {}
    for item in sequence:
        apply(balance, item.counters())
        assert identity_holds(balance)

    assert balance.get("available", 0) == sum(item.points for item in sequence)


def test_every_entry_kind_records_a_domain_event() -> None:
    assert set(EVENT_OF_KIND) == set(EntryKind)
    assert EVENT_OF_KIND[EntryKind.EARN] is EventType.POINTS_EARNED
    assert EVENT_OF_KIND[EntryKind.REVERSAL] is EventType.POINTS_REVERSED


def test_unrecovered_is_never_negative() -> None:
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        entry(EntryKind.REVERSAL, -1, unrecovered=-1)
