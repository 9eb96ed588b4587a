"""The rewards catalog."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, Field


class RewardKind(StrEnum):
    DISCOUNT = "discount"
    FREE_PRODUCT = "free_product"
    EXCLUSIVE_OFFER = "exclusive_offer"


class Reward(BaseModel):
    reward_id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
    name: Annotated[str, Field(min_length=1, max_length=120)]
    description: Annotated[str, Field(max_length=1000)] = ""
    kind: RewardKind
    cost_points: Annotated[int, Field(gt=0, le=10_000_000)]
    value: Decimal | None = Field(default=None, description="Face value of a discount, in `currency`.")
    currency: str | None = None
    active: bool = True
    min_tier: Annotated[str, Field(min_length=1, max_length=40)] | None = Field(
        default=None,
        description="The lowest tier that may redeem it (a name on the program's ladder); any tier if absent.",
    )

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)
