"""The demo program the local stack starts with: a configured program, a rewards catalog, members with history.

Everything goes through the same service the handlers use, so the demo data is made by the real ledger (and its
domain events flow through the stream to the bus like any others).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from loyalty.points.activities import Engagement, LineItem, Purchase
from loyalty.points.members import Consent, Enrollment, Profile
from loyalty.points.program import ProgramConfig
from loyalty.points.rewards import Reward, RewardKind
from loyalty.runtime import loyalty_service

PROGRAM = ProgramConfig(
    version=1,
    points_per_unit={"USD": Decimal(1), "EUR": Decimal("1.1")},
    exchange_rates={"EUR": Decimal("1.08")},  # USD per EUR: EUR spend is kept in USD
    category_multipliers={"skincare": Decimal(2)},
    sku_multipliers={"SKU-GIFTSET": Decimal(3)},
)

REWARDS = (
    Reward(reward_id="sample-trio", name="Deluxe sample trio", kind=RewardKind.FREE_PRODUCT, cost_points=100),
    Reward(
        reward_id="ten-off",
        name="$10 off your next order",
        kind=RewardKind.DISCOUNT_FIXED,
        cost_points=500,
        value=Decimal(10),
        currency="USD",
    ),
    Reward(
        reward_id="twenty-five-off",
        name="$25 off your next order",
        kind=RewardKind.DISCOUNT_FIXED,
        cost_points=1000,
        value=Decimal(25),
        currency="USD",
    ),
    Reward(reward_id="full-size-serum", name="Full-size serum", kind=RewardKind.FREE_PRODUCT, cost_points=1500),
    Reward(
        reward_id="early-access",
        name="Early access to the holiday sale",
        kind=RewardKind.EXCLUSIVE_OFFER,
        cost_points=250,
    ),
)

# (external id, first name, months of history: list of (months ago, amount, category))
MEMBERS: tuple[tuple[str, str, list[tuple[int, str, str | None]]], ...] = (
    (
        "demo-ada",
        "Ada",
        [
            (11, "120.00", "skincare"),
            (8, "64.50", None),
            (5, "210.00", "skincare"),
            (2, "89.99", None),
            (0, "45.00", "fragrance"),
        ],
    ),
    ("demo-grace", "Grace", [(14, "35.00", None), (13, "22.00", None)]),
    ("demo-linus", "Linus", [(1, "540.00", "skincare"), (0, "120.00", None)]),
    ("demo-new", "Nova", []),
)


def seed(stack: Any = None) -> dict[str, str]:
    """Seed the demo program; safe to run twice (every write is idempotent). Returns external id -> member id."""
    service = loyalty_service()
    if service.store.get_program() is None:  # a second run keeps the program in force (an admin may have replaced it)
        service.store.put_program(PROGRAM, replaces=None, replaced_at=datetime.now(UTC), replaced_by="devstack-seed")
    for reward in REWARDS:
        service.store.put_reward(reward)
    service.program.clear()
    service.catalog.clear()
    now = datetime.now(UTC)
    members: dict[str, str] = {}
    for external_id, name, history in MEMBERS:
        outcome = service.enroll(
            Enrollment(
                external_id=external_id,
                profile=Profile(first_name=name, country="FR" if external_id in ("demo-ada", "demo-linus") else "US"),
                consent=Consent(email=True, push=True, profiling=True),
            )
        )
        member_id = outcome.body["member_id"]
        members[external_id] = member_id
        for index, (months_ago, amount, category) in enumerate(history):
            lines = (LineItem(category=category, amount=Decimal(amount)),) if category else ()
            service.purchase(
                member_id,
                Purchase(
                    order_id=f"{external_id}-order-{index}",
                    amount=Decimal(amount),
                    currency="USD",
                    occurred_at=now - timedelta(days=30 * months_ago + 1),
                    line_items=lines,
                ),
            )
        if history:
            service.record(
                member_id,
                Engagement(type="review", reference="SKU-SERUM"),
                idempotency_key=f"{external_id}-review",
            )
    service.redeem(members["demo-ada"], "sample-trio", idempotency_key="demo-ada-first-reward")
    print("seeded demo members (use Authorization: Bearer dev:member:<member_id>):", file=sys.stderr)
    for external_id, member_id in members.items():
        print(f"  {external_id:<12} {member_id}", file=sys.stderr)
    if stack is not None:  # the nightly refresh, now, so segment sizes and KPIs are there from the start
        started = stack.fire_schedule("SegmentRefreshStateMachine", "Nightly")
        print(
            f"started the segment refresh's execution {started['executionArn']} (GET /v1/admin/segment-refreshes)",
            file=sys.stderr,
        )
    return members
