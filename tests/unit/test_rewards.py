"""The rewards catalog as data (loyalty.points.rewards): each kind and the figures it needs, every problem reported
at once at its field, the window, the per-member periods, tier gates, and what a member is offered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from loyalty.points.program import DEFAULT_LADDER
from loyalty.points.rewards import (
    LimitPeriod,
    Reward,
    RewardKind,
    allowed_tiers,
    limit_ends,
    limit_key,
    offers,
    tier_allows,
    window_refusal,
)

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
EVENT = {"starts_at": "2026-09-01T19:00:00Z", "place": "Paris, rue de Rivoli"}


def reward(reward_id: str = "treat", **terms: Any) -> Reward:
    return Reward.model_validate(
        {"reward_id": reward_id, "name": reward_id.title(), "kind": "free_product", "cost_points": 100, **terms}
    )


def problems(document: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as invalid:
        Reward.model_validate({"reward_id": "r", "name": "R", "cost_points": 10, **document})
    return {".".join(map(str, error["loc"])): error["msg"] for error in invalid.value.errors()}


# ---- kinds and their figures ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "terms",
    [
        {"kind": "discount_fixed", "value": "10.00", "currency": "EUR"},
        {"kind": "discount_percent", "percent": 15},
        {"kind": "free_product", "sku": "SKU-SERUM-30"},
        {"kind": "free_product"},  # a bundle the store knows by the reward's name
        {"kind": "exclusive_offer", "description": "Early access to the holiday sale"},
        {"kind": "experience", "experience": EVENT, "stock": 40},
        {"kind": "donation", "cause": "Ocean clean-up"},
    ],
    ids=lambda terms: terms["kind"] + ("-sku" if "sku" in terms else ""),
)
def test_each_kind_takes_its_own_figures(terms: dict[str, Any]) -> None:
    made = reward(**terms)

    assert made.kind == terms["kind"]
    assert Reward.model_validate(made.public()) == made  # what the API sends back reads as the same reward


@pytest.mark.parametrize(
    ("terms", "field", "reason"),
    [
        ({"kind": "discount_fixed", "currency": "USD"}, "value", "a discount_fixed reward needs its value"),
        ({"kind": "discount_fixed", "value": "5"}, "currency", "a discount_fixed reward needs its currency"),
        ({"kind": "discount_percent"}, "percent", "a discount_percent reward needs its percent"),
        ({"kind": "discount_percent", "percent": 101}, "percent", "less than or equal to 100"),
        ({"kind": "discount_percent", "percent": 0}, "percent", "greater than or equal to 1"),
        ({"kind": "donation"}, "cause", "a donation reward needs its cause"),
        ({"kind": "experience", "stock": 5}, "experience", "an experience reward needs its experience"),
        ({"kind": "free_product", "percent": 10}, "percent", "takes no percent (only discount_percent rewards do)"),
        ({"kind": "donation", "cause": "x", "value": "1"}, "value", "takes no value (only discount_fixed rewards do)"),
        ({"kind": "discount_percent", "percent": 5, "sku": "S"}, "sku", "takes no sku (only free_product rewards"),
        ({"kind": "free_product", "cause": "x"}, "cause", "takes no cause (only donation rewards do)"),
        ({"kind": "free_product", "experience": EVENT}, "experience", "takes no experience"),
        ({"kind": "discount_fixed", "value": "5", "currency": "usd"}, "currency", "should match pattern"),
        ({"kind": "free_product", "stock": -1}, "stock", "greater than or equal to 0"),
        ({"kind": "free_product", "limit_period": "month"}, "limit_period", "needs a per_member_limit"),
        ({"kind": "free_product", "per_member_limit": 0}, "per_member_limit", "greater than or equal to 1"),
        ({"kind": "discount"}, "kind", "Input should be 'discount_fixed', "),  # the old name is read, not written
    ],
)
def test_a_figure_missing_refused_or_out_of_range_is_named_with_its_reason(
    terms: dict[str, Any], field: str, reason: str
) -> None:
    found = problems(terms)

    assert field in found, found
    assert reason in found[field]


def test_every_problem_is_reported_at_once_each_at_its_field() -> None:
    found = problems(
        {
            "name": "",
            "kind": "discount_fixed",
            "cost_points": 0,
            "percent": 20,
            "valid_from": "2026-07-01T00:00:00Z",
            "valid_until": "2026-06-01T00:00:00Z",
            "limit_period": "year",
        }
    )

    assert set(found) == {"name", "cost_points", "value", "currency", "percent", "valid_until", "limit_period"}


def test_the_window_must_end_after_it_starts_and_an_experience_closes_when_its_event_starts() -> None:
    empty = {"kind": "free_product", "valid_from": "2026-07-01T00:00:00Z", "valid_until": "2026-07-01T00:00:00Z"}
    late = {"kind": "experience", "experience": EVENT, "stock": 5, "valid_until": "2026-09-02T00:00:00Z"}

    assert "after valid_from" in problems(empty)["valid_until"]
    assert "closes when its event starts" in problems(late)["valid_until"]


def test_instants_are_kept_in_utc() -> None:
    paris = timezone(timedelta(hours=2))
    made = reward(
        kind="experience",
        stock=5,
        experience={"starts_at": datetime(2026, 9, 1, 21, 0, tzinfo=paris), "place": "Paris"},
        valid_from=datetime(2026, 6, 1, 2, 0, tzinfo=paris),
    )

    assert made.valid_from == datetime(2026, 6, 1, 0, 0, tzinfo=UTC) and made.valid_from.tzinfo is UTC
    assert made.experience is not None and made.experience.starts_at.tzinfo is UTC


def test_a_stored_reward_of_the_old_discount_kind_reads_as_a_fixed_discount_at_version_1() -> None:
    stored = {"PK": "CATALOG", "SK": "REWARD#ten-off", "correlation_id": "c-1", "reward_id": "ten-off"}
    stored |= {"name": "$10 off", "kind": "discount", "cost_points": Decimal(500), "value": Decimal(10)}
    stored |= {"currency": "USD", "active": True}

    read = Reward.from_stored(stored)

    assert (read.kind, read.value, read.currency, read.version) == (RewardKind.DISCOUNT_FIXED, 10, "USD", 1)
    assert read.public()["kind"] == "discount_fixed"


# ---- the window -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "code"),
    [
        (datetime(2026, 6, 1, tzinfo=UTC) - timedelta(microseconds=1), "reward_not_yet_valid"),
        (datetime(2026, 6, 1, tzinfo=UTC), None),  # from valid_from, inclusive
        (datetime(2026, 7, 1, tzinfo=UTC) - timedelta(microseconds=1), None),
        (datetime(2026, 7, 1, tzinfo=UTC), "reward_expired"),  # until valid_until, exclusive
    ],
)
def test_the_window_includes_its_start_and_excludes_its_end(at: datetime, code: str | None) -> None:
    made = reward(valid_from="2026-06-01T00:00:00Z", valid_until="2026-07-01T00:00:00Z")

    refusal = window_refusal(made, at)

    assert (refusal.code if refusal else None) == code
    assert made.is_open(at) is (code is None)


def test_an_experience_closes_when_its_event_starts_and_says_when() -> None:
    made = reward(kind="experience", experience=EVENT, stock=5)
    starts = datetime(2026, 9, 1, 19, 0, tzinfo=UTC)

    refusal = window_refusal(made, starts)

    assert made.is_open(starts - timedelta(seconds=1))
    assert refusal is not None and refusal.code == "reward_expired"
    assert refusal.body()["valid_until"] == starts.isoformat()


# ---- per-member periods -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "key", "ends"),
    [
        (LimitPeriod.LIFETIME, "lifetime", None),
        (LimitPeriod.YEAR, "2026", datetime(2027, 1, 1, tzinfo=UTC)),
        (LimitPeriod.MONTH, "2026-06", datetime(2026, 7, 1, tzinfo=UTC)),
    ],
)
def test_a_limit_counts_in_the_utc_period_of_the_redemption(
    period: LimitPeriod, key: str, ends: datetime | None
) -> None:
    assert limit_key(period, NOW) == key
    assert limit_ends(period, NOW) == ends


@given(
    moment=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2200, 12, 31), timezones=st.just(UTC)),
    period=st.sampled_from([LimitPeriod.YEAR, LimitPeriod.MONTH]),
)
def test_a_period_ends_where_the_next_key_begins(moment: datetime, period: LimitPeriod) -> None:
    ends = limit_ends(period, moment)

    assert ends is not None and ends > moment
    assert limit_key(period, ends - timedelta(microseconds=1)) == limit_key(period, moment)
    assert limit_key(period, ends) != limit_key(period, moment)


# ---- tier gates and what a member is offered --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("min_tier", "allowed"),
    [(None, None), ("Insider", ("Insider", "VIB", "Rouge")), ("VIB", ("VIB", "Rouge")), ("Gold", ())],
    ids=["ungated", "bottom", "middle", "not-on-the-ladder"],
)
def test_a_gate_allows_its_tier_and_those_above(min_tier: str | None, allowed: tuple[str, ...] | None) -> None:
    made = reward(min_tier=min_tier)

    assert allowed_tiers(made, DEFAULT_LADDER) == allowed
    assert tier_allows(made, "Rouge", DEFAULT_LADDER) is (min_tier != "Gold")
    assert tier_allows(made, "Insider", DEFAULT_LADDER) is (min_tier in (None, "Insider"))


def test_a_member_is_offered_what_is_active_open_and_in_stock_cheapest_first() -> None:
    catalog = [
        reward("serum", cost_points=1500),
        reward("sample", cost_points=100),
        reward("retired", active=False),
        reward("sold-out", stock=0),
        reward("last-one", stock=1, cost_points=300),
        reward("later", valid_from="2026-07-01T00:00:00Z"),
        reward("over", valid_until="2026-06-01T00:00:00Z"),
    ]

    offered = offers(catalog, NOW, "Insider", DEFAULT_LADDER)

    assert [offer.reward.reward_id for offer in offered] == ["sample", "last-one", "serum"]
    assert all(offer.tier_allows for offer in offered)


def test_a_reward_above_the_members_tier_is_shown_to_reach_for_but_an_exclusive_offer_is_not() -> None:
    catalog = [
        reward("rouge-gift", min_tier="Rouge", cost_points=200),
        reward("rouge-preview", kind="exclusive_offer", min_tier="Rouge", cost_points=50),
        reward("vib-preview", kind="exclusive_offer", min_tier="VIB", cost_points=60),
    ]

    as_vib = {o.reward.reward_id: o.tier_allows for o in offers(catalog, NOW, "VIB", DEFAULT_LADDER)}
    as_rouge = {o.reward.reward_id: o.tier_allows for o in offers(catalog, NOW, "Rouge", DEFAULT_LADDER)}

    assert as_vib == {"vib-preview": True, "rouge-gift": False}
    assert as_rouge == {"rouge-preview": True, "vib-preview": True, "rouge-gift": True}


def test_only_a_donation_gives_no_voucher() -> None:
    kinds = {
        RewardKind.DISCOUNT_FIXED: {"value": "5", "currency": "USD"},
        RewardKind.DISCOUNT_PERCENT: {"percent": 10},
        RewardKind.FREE_PRODUCT: {},
        RewardKind.EXCLUSIVE_OFFER: {},
        RewardKind.EXPERIENCE: {"experience": EVENT, "stock": 1},
        RewardKind.DONATION: {"cause": "Reforestation"},
    }

    assert {kind: reward(kind=kind, **figures).gives_voucher for kind, figures in kinds.items()} == {
        kind: kind is not RewardKind.DONATION for kind in RewardKind
    }
