"""Category affinity's write side: names, what an order adds, where it goes on the member item, what a refund takes."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loyalty.adapters.dynamodb.points_store import LoyaltyStore
from loyalty.points.activities import LineItem
from loyalty.points.categories import (
    MAX_CATEGORIES,
    OrderCategories,
    category_name,
    fits,
    order_categories,
    place,
    refund_shares,
    taken_from_member,
)
from loyalty.points.ledger import EntryKind, LedgerEntry
from loyalty.points.ports import PurchaseFacts

D = Decimal


def line(category: str | None, amount: str) -> LineItem:
    return LineItem(category=category, amount=D(amount))


# ---- names -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("Makeup", "makeup"),
        ("  Skin   Care ", "skin care"),
        ("SKIN\tCARE", "skin care"),
        ("\uff2d\uff41\uff4b\uff45\uff55\uff50", "makeup"),  # full-width letters (NFKC)
        ("Straße", "strasse"),  # case-folded, not just lowercased
        ("bath.body", "bath.body"),
        ("   ", None),
        (None, None),
    ],
)
def test_a_category_has_one_spelling(raw: str | None, stored: str | None) -> None:
    assert category_name(raw) == stored


def test_a_stored_name_is_its_own_spelling() -> None:
    for raw in ("Makeup", "  Skin   Care ", "\uff2d\uff41\uff4b\uff45\uff55\uff50", "Straße"):
        name = category_name(raw)
        assert name is not None and category_name(name) == name


# ---- what an order adds --------------------------------------------------------------------------------------


def test_an_orders_lines_add_up_per_normalised_category_and_uncategorised_lines_add_to_none() -> None:
    order = order_categories(
        [line("Makeup", "30.00"), line(" makeup", "10.50"), line("Skin Care", "40"), line(None, "20"), line(" ", "5")]
    )

    assert order == OrderCategories({"makeup": D("40.50"), "skin care": D("40")}, D(0))


def test_a_category_whose_lines_total_zero_is_not_added() -> None:
    assert order_categories([line("samples", "0"), line("makeup", "1")]).totals == {"makeup": D(1)}


def test_an_order_adds_at_most_fifty_names_the_smallest_categories_going_to_other() -> None:
    # Given 52 categories: c00 the largest ... c51 the smallest, and two equal ones at the boundary
    lines = [line(f"c{i:02d}", str(100 - i)) for i in range(50)] + [line("zz", "51"), line("aa", "51")]

    order = order_categories(lines)

    # Then the 50 largest are kept (51.00 x 2 tie: "aa" before "zz"), the rest summed into other
    assert len(order.totals) == MAX_CATEGORIES
    assert "aa" in order.totals and "zz" not in order.totals and "c49" not in order.totals
    assert order.other == D(51) + D(51)  # zz (51) and c49 (51)


# ---- where it goes on the member item ------------------------------------------------------------------------


def test_a_purchase_fits_when_every_name_is_kept_or_there_is_room_for_all() -> None:
    order = OrderCategories({"a": D(1), "b": D(2)})
    full = {f"k{i}": D(1) for i in range(MAX_CATEGORIES)}

    assert fits(order, {})
    assert fits(order, dict(list(full.items())[:48]))
    assert not fits(order, dict(list(full.items())[:49]))
    assert fits(order, {**dict(list(full.items())[:48]), "a": D(0), "b": D(1)})
    assert not fits(order, None)  # an item enrolled before the map existed
    assert fits(OrderCategories(), None)


def test_new_names_take_the_room_left_largest_first_and_the_rest_go_to_other() -> None:
    seen = {f"k{i}": D(1) for i in range(MAX_CATEGORIES - 2)} | {"makeup": D(5)}  # 49 names: room for 1
    order = OrderCategories({"makeup": D(3), "small": D(2), "large": D(9), "mid": D(4)}, other=D("0.5"))

    placement = place(order, seen)

    assert placement.kept == {"makeup": D(3), "large": D(9)}
    assert placement.new == {"large"}
    assert placement.other == D("0.5") + D(2) + D(4)
    assert (placement.create, placement.seen_size) == (False, MAX_CATEGORIES - 1)


def test_an_item_without_the_map_gets_one_made_of_the_orders_categories() -> None:
    placement = place(OrderCategories({"makeup": D(3)}), None)

    assert (placement.kept, placement.create, placement.other) == ({"makeup": D(3)}, True, D(0))


def test_the_update_of_the_largest_purchase_fits_dynamodbs_expression_limits() -> None:
    # Given a purchase with as many categories as one order adds by name, with the longest names
    store = LoyaltyStore(object(), "t", clock=lambda: datetime(2026, 1, 15, tzinfo=UTC))
    names = {f"{i:02d}" + "x" * 62: D("1234567890.123") for i in range(MAX_CATEGORIES)}
    entry = LedgerEntry(
        entry_id="e", member_id="m", kind=EntryKind.EARN, points=10, created_at=datetime(2026, 1, 15, tzinfo=UTC)
    )
    purchase = PurchaseFacts(datetime(2026, 1, 15, tzinfo=UTC), D("1e12"), OrderCategories(names, D(1)))

    # When the member update is built, on the first attempt and on the planned retry
    for seen in (None, {"spend_by_category": {f"k{i}": D(1) for i in range(10)}}):
        request = store._member_update(entry, purchase, categories_seen=seen).request("t", {})["Update"]

        # Then each expression is inside DynamoDB's 4 KB, and the update's operators inside its 300
        assert len(request["UpdateExpression"].encode()) < 4096
        assert len(request["ConditionExpression"].encode()) < 4096
        operators = request["UpdateExpression"].count("+") + request["UpdateExpression"].count("if_not_exists")
        assert operators < 300


# ---- refunds -------------------------------------------------------------------------------------------------


def test_a_refund_takes_its_share_of_each_category_rounded_down_to_a_thousandth() -> None:
    order = OrderCategories({"makeup": D("30.00"), "skin care": D("40.00")})  # of a 100.00 order

    first = refund_shares(order, D("100.00"), D(0), D("33.33"))
    second = refund_shares(order, D("100.00"), D("33.33"), D("66.67"))

    assert first.totals == {"makeup": D("9.999"), "skin care": D("13.332")}
    assert second.totals == {"makeup": D("20.001"), "skin care": D("26.668")}


amounts = st.decimals(min_value=D("0.001"), max_value=D("99999.999"), places=3)


@given(
    totals=st.lists(amounts, min_size=1, max_size=5),
    uncategorised=st.decimals(min_value=D(0), max_value=D("999.999"), places=3),
    cuts=st.lists(st.integers(1, 10**6), min_size=1, max_size=6),
    other=st.decimals(min_value=D(0), max_value=D("999.999"), places=3),
)
@settings(max_examples=300, database=None, deadline=None)
def test_refunds_split_any_way_take_back_each_category_exactly_once_in_full(
    totals: list[Decimal], uncategorised: Decimal, cuts: list[int], other: Decimal
) -> None:
    # Given an order whose lines cover part of it, refunded in several pieces that add up to the whole
    order = OrderCategories({f"c{i}": total for i, total in enumerate(totals)}, other)
    amount = sum(totals, D(0)) + other + uncategorised
    weights = sum(cuts)
    pieces = [(amount * cut / weights).quantize(D("0.001"), rounding="ROUND_FLOOR") for cut in cuts]
    pieces[-1] = amount - sum(pieces[:-1])

    taken = dict.fromkeys(order.totals, D(0))
    taken_other, refunded = D(0), D(0)
    for piece in pieces:
        shares = refund_shares(order, amount, refunded, piece)
        refunded += piece
        # Then no refund takes a negative amount, and none takes more than what is left
        assert all(value > 0 for value in shares.totals.values()) and shares.other >= 0
        for name, value in shares.totals.items():
            taken[name] += value
            assert taken[name] <= order.totals[name]
        taken_other += shares.other
        assert taken_other <= other

    # And the whole order refunded gives every category back exactly
    assert taken == order.totals
    assert taken_other == other


def test_a_refund_takes_from_the_name_the_member_holds_or_else_from_other_never_below_zero() -> None:
    shares = OrderCategories({"makeup": D(3), "lost": D(2), "drained": D(5)}, other=D(1))
    seen = {"makeup": D(10), "drained": D(4)}

    by_name, other = taken_from_member(shares, seen, seen_other=D(10))

    assert by_name == {"makeup": D(3), "drained": D(4)}  # drained: only 4 there
    assert other == D(2) + D(1)
    assert taken_from_member(shares, seen, seen_other=D("1.5"))[1] == D("1.5")
    assert taken_from_member(shares, None, seen_other=None) == ({}, D(0))
