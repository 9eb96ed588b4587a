"""What members do that moves points: the validated input of the ledger."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

# Order and refund ids come from other systems: printable, no separators we use in keys.
ExternalRef = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:/@+=-]+$")]
Amount = Annotated[Decimal, Field(gt=0, max_digits=15, decimal_places=3, allow_inf_nan=False)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]


class ActivityType(StrEnum):
    PURCHASE = "purchase"
    REFUND = "refund"
    REFERRAL = "referral"
    REVIEW = "review"
    SOCIAL_SHARE = "social_share"
    SURVEY = "survey"
    ADJUSTMENT = "adjustment"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LineItem(_Strict):
    sku: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    category: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    quantity: Annotated[int, Field(ge=1, le=10_000)] = 1
    amount: Annotated[Decimal, Field(ge=0, max_digits=15, decimal_places=3, allow_inf_nan=False)]


class Purchase(_Strict):
    type: Literal[ActivityType.PURCHASE] = ActivityType.PURCHASE
    order_id: ExternalRef
    amount: Amount = Field(description="Order total that earns points, in `currency`.")
    currency: Currency
    occurred_at: AwareDatetime | None = Field(default=None, description="When the order was placed; now if absent.")
    line_items: tuple[LineItem, ...] = Field(default=(), max_length=500)


class Refund(_Strict):
    type: Literal[ActivityType.REFUND] = ActivityType.REFUND
    order_id: ExternalRef
    refund_id: ExternalRef = Field(
        description="The commerce system's id of this refund: its identity, so the same refund sent twice (a "
        "retried call, a second event) reverses points once."
    )
    amount: Amount = Field(description="Amount refunded, in the order's currency.")
    occurred_at: AwareDatetime | None = None


class Engagement(_Strict):
    """Referral, review, social share or survey: a fixed number of points from the program configuration."""

    type: Literal[ActivityType.REFERRAL, ActivityType.REVIEW, ActivityType.SOCIAL_SHARE, ActivityType.SURVEY]
    reference: Annotated[str, Field(min_length=1, max_length=256)] | None = Field(
        default=None, description="What was reviewed, shared or answered, or who was referred."
    )
    occurred_at: AwareDatetime | None = None


class Adjustment(_Strict):
    type: Literal[ActivityType.ADJUSTMENT] = ActivityType.ADJUSTMENT
    points: Annotated[int, Field(ge=-1_000_000, le=1_000_000)] = Field(description="Signed; never zero.")
    reason: Annotated[str, Field(min_length=3, max_length=500)]


Activity = Annotated[Purchase | Refund | Engagement | Adjustment, Field(discriminator="type")]
