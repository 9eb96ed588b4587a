"""`python -m bench.pricing`: pricing a purchase with promotions (loyalty.points.pricing) beside purchase_points.

One 20-line order, one member, one program with 50 active rules and promotions (15 category and 10 SKU multipliers;
25 promotions of every kind, all on, all for this member, with caps and budgets to check), priced again and again
in this process: microseconds per pricing, and the ratio to purchase_points on the same order (the program's rules
alone, today's cost of an earn). The run fails unless pricing's program lines add up to purchase_points. Times are
the best of --repeats runs.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from loyalty.points.activities import LineItem
from loyalty.points.pricing import MemberContext, PurchaseContext, price_purchase
from loyalty.points.program import ProgramConfig, purchase_points
from loyalty.points.promotions import Promotion, PromotionKind

NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)
CATEGORIES = tuple(f"category {index}" for index in range(15))
SKUS = tuple(f"SKU-{index}" for index in range(10))


def _promotion(index: int, kind: PromotionKind, **fields: Any) -> Promotion:
    return Promotion(
        promotion_id=f"promotion-{index}",
        name=f"Promotion {index}",
        kind=kind,
        starts_at=NOW - timedelta(days=index + 1),
        ends_at=NOW + timedelta(days=index + 1),
        **fields,
    )


def scenario() -> tuple[ProgramConfig, PurchaseContext, MemberContext]:
    """The program (25 rules, 25 promotions), the 20-line order and the member the bench prices."""
    promotions = []
    for index in range(25):
        audience: dict[str, Any] = {
            "tiers": {"VIB", "Rouge"} if index % 3 == 0 else set(),
            "segments": {"lifecycle:occasional", "rfm:at-risk"} if index % 4 == 0 else set(),
            "cap": {"points": 5_000, "period": ("day", "week", "month", "year", "promotion")[index % 5]},
            "budget": 1_000_000 if index % 2 else None,
        }
        if index < 8:
            promotions.append(_promotion(index, PromotionKind.MULTIPLIER, multiplier=Decimal("1.5"), **audience))
        elif index < 17:
            covered = {"categories": set(CATEGORIES[index % 15 : index % 15 + 3]), "skus": {SKUS[index % 10]}}
            promotions.append(
                _promotion(index, PromotionKind.CATEGORY_MULTIPLIER, multiplier=Decimal(2), **covered, **audience)
            )
        elif index < 22:
            minimum = {"amount": "50", "currency": "USD"}
            promotions.append(_promotion(index, PromotionKind.FIXED_BONUS, points=100, min_amount=minimum, **audience))
        else:
            promotions.append(_promotion(index, PromotionKind.FIRST_PURCHASE_BONUS, points=250, **audience))
    program = ProgramConfig(
        points_per_unit={"USD": Decimal("1.5")},
        category_multipliers={name: Decimal(1) + Decimal(index) / 10 for index, name in enumerate(CATEGORIES)},
        sku_multipliers={sku: Decimal(2) + Decimal(index) / 4 for index, sku in enumerate(SKUS)},
        promotions=tuple(promotions),
    )
    lines = tuple(
        LineItem(
            sku=f"SKU-{index % 13}",  # SKU-0..9 have their own multiplier, SKU-10..12 fall back to the category
            category=CATEGORIES[index % 15] if index % 7 else None,
            amount=Decimal(index * 3 + 1) + Decimal("0.99"),
        )
        for index in range(20)
    )
    purchase = PurchaseContext(sum((line.amount for line in lines), Decimal(0)) + Decimal("12.34"), "USD", lines)
    member = MemberContext(
        tier="VIB",
        tier_multiplier=Decimal("1.25"),
        segments=frozenset({"lifecycle:occasional", "rfm:champions"}),
        first_purchase=True,
        given_in_period={f"promotion-{index}": 100 * index for index in range(25)},
    )
    return program, purchase, member


def _best_per_call(actions: tuple[Callable[[], Any], ...], count: int, repeats: int) -> list[float]:
    """Seconds per call of each action, the best of `repeats` runs; the actions take turns within each repeat, so
    that a busy moment of a shared machine weighs on both sides of the ratio alike."""
    best = [float("inf")] * len(actions)
    for _ in range(repeats):
        for index, action in enumerate(actions):
            start = time.perf_counter()
            for _ in range(count):
                action()
            best[index] = min(best[index], (time.perf_counter() - start) / count)
    return best


def bench_pricing(count: int = 2_000, repeats: int = 5) -> tuple[float, float]:
    """Prints and returns (seconds per price_purchase, seconds per purchase_points) on the same order."""
    program, purchase, member = scenario()
    pricing = price_purchase(program, purchase, member, NOW)
    program_points = purchase_points(program, purchase.amount, purchase.currency, purchase.lines)
    assert pricing.program_points == program_points, "pricing's program lines differ from purchase_points"
    assert sum(line.points for line in pricing.breakdown) == pricing.points
    on = [p for p in program.promotions if p.is_on(NOW)]
    assert len(on) == 25 and len(program.category_multipliers) + len(program.sku_multipliers) == 25

    priced, baseline = _best_per_call(
        (
            lambda: price_purchase(program, purchase, member, NOW),
            lambda: purchase_points(program, purchase.amount, purchase.currency, purchase.lines),
        ),
        count,
        repeats,
    )
    print(
        f"pricing: a {len(purchase.lines)}-line order, 25 program rules and {len(on)} active promotions "
        f"({len(pricing.promotions)} gave points, {len(pricing.breakdown)} breakdown lines, {pricing.points:,} points "
        f"of which {program_points:,} from the program)"
    )
    print(
        f"  price_purchase {priced * 1e6:8.1f} us | purchase_points {baseline * 1e6:8.1f} us | "
        f"ratio x{priced / baseline:.1f}  (best of {repeats} x {count:,}, taking turns)"
    )
    return priced, baseline


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=2_000, help="pricings per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per function (best is kept)")
    args = parser.parse_args(argv)
    bench_pricing(args.count, args.repeats)


if __name__ == "__main__":
    main()
