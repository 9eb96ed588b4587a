"""Program configuration: how activities earn points. A validated, versioned document stored in the table."""

from __future__ import annotations

import re
from decimal import ROUND_FLOOR, Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from loyalty.core.errors import InvalidRequest
from loyalty.points.activities import ActivityType, LineItem
from loyalty.points.promotions import Promotions

_ISO_CURRENCY = re.compile(r"[A-Z]{3}")
Multiplier = Annotated[Decimal, Field(ge=0, le=100)]


class Tier(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1, max_length=40)
    threshold: int = Field(ge=0, description="Qualifying points needed to hold this tier.")


class ProgramConfig(BaseModel):
    """What a purchase or an engagement activity is worth. Changed as data, without a deploy."""

    model_config = ConfigDict(frozen=True)

    version: int = Field(default=1, ge=1)
    base_currency: str = "USD"
    # Points per whole currency unit, per accepted currency. A purchase in a currency not listed is refused.
    points_per_unit: dict[str, Annotated[Decimal, Field(gt=0, le=1000)]] = Field(
        default_factory=lambda: {"USD": Decimal(1)}
    )
    category_multipliers: dict[str, Multiplier] = Field(default_factory=dict)
    sku_multipliers: dict[str, Multiplier] = Field(default_factory=dict)
    # Time-boxed offers on top of these rules, priced by loyalty.points.pricing (docs/promotions.md).
    promotions: Promotions = ()
    activity_points: dict[ActivityType, Annotated[int, Field(ge=0, le=100_000)]] = Field(
        default_factory=lambda: {
            ActivityType.REFERRAL: 500,
            ActivityType.REVIEW: 50,
            ActivityType.SOCIAL_SHARE: 25,
            ActivityType.SURVEY: 100,
        }
    )
    # Guards against absurd input: a purchase larger than this is refused, not earned on.
    max_purchase_amount: Decimal = Field(default=Decimal(1_000_000), gt=0)
    max_adjustment_points: int = Field(default=1_000_000, gt=0)
    tiers: tuple[Tier, ...] = (
        Tier(name="Insider", threshold=0),
        Tier(name="VIB", threshold=350),
        Tier(name="Rouge", threshold=1000),
    )

    @field_validator("points_per_unit")
    @classmethod
    def _currencies_are_iso(cls, rates: dict[str, Decimal]) -> dict[str, Decimal]:
        for code in rates:
            if not _ISO_CURRENCY.fullmatch(code):
                raise ValueError(f"currency {code!r} is not an ISO 4217 code")
        return rates

    @model_validator(mode="after")
    def _tiers_ascend_from_zero(self) -> ProgramConfig:
        thresholds = [t.threshold for t in self.tiers]
        if not thresholds or thresholds[0] != 0 or thresholds != sorted(set(thresholds)):
            raise ValueError("tiers must start at threshold 0 and ascend strictly")
        return self

    @property
    def entry_tier(self) -> str:
        return self.tiers[0].name


def _floor(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def purchase_points(program: ProgramConfig, amount: Decimal, currency: str, lines: tuple[LineItem, ...] = ()) -> int:
    """Points for a purchase: floor(amount x rate) plus, per line, the extra its category or SKU multiplier earns.

    Rounding happens once, on the total, so splitting an order into lines never loses a point. A SKU multiplier
    takes precedence over its category's. Lines may cover part of the order; they may not exceed it.
    """
    rate = program.points_per_unit.get(currency)
    if rate is None:
        raise InvalidRequest(f"currency {currency} is not accepted by this program", field="currency")
    if amount > program.max_purchase_amount:
        raise InvalidRequest(f"amount exceeds the program's limit of {program.max_purchase_amount}", field="amount")
    lines_total = sum((line.amount for line in lines), Decimal(0))
    if lines_total > amount:
        raise InvalidRequest("line items add up to more than the order amount", field="line_items")
    earned = amount
    for line in lines:
        multiplier = program.sku_multipliers.get(line.sku) if line.sku else None
        if multiplier is None and line.category:
            multiplier = program.category_multipliers.get(line.category)
        if multiplier is not None:
            earned += line.amount * (multiplier - 1)
    return max(0, _floor(earned * rate))


def activity_points(program: ProgramConfig, activity: ActivityType) -> int:
    return program.activity_points.get(activity, 0)
