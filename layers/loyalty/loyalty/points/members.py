"""Members: who they are, what they consented to, and where they stand."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from loyalty.points.ledger import Balance


def _plausible_birthday(value: date) -> date:
    today = date.today()
    if value > today:
        raise ValueError("birthday is in the future")
    if value.year < today.year - 130:
        raise ValueError("birthday is more than 130 years ago")
    return value


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    first_name: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    last_name: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    email: Annotated[str, Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")] | None = None
    phone: Annotated[str, Field(pattern=r"^\+[1-9][0-9]{6,14}$", description="E.164")] | None = None
    locale: Annotated[str, Field(pattern=r"^[a-z]{2}(-[A-Z]{2})?$")] | None = None
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")] | None = None
    postal_code: Annotated[str, Field(max_length=16)] | None = None


class Consent(BaseModel):
    """Per-channel marketing consent; absent means no."""

    model_config = ConfigDict(extra="forbid")

    email: bool = False
    sms: bool = False
    push: bool = False
    whatsapp: bool = False
    profiling: bool = Field(default=False, description="Consent to segmentation and personalised offers.")


ExternalId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@+=-]+$")]


class Enrollment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    external_id: ExternalId = Field(description="The member's id in the brand's own systems; unique.")
    profile: Profile = Field(default_factory=Profile)
    consent: Consent = Field(default_factory=Consent)
    birthday: Annotated[date, AfterValidator(_plausible_birthday)] | None = None
    referred_by: Annotated[str, Field(pattern=r"^[2-9A-Z]{4}-[2-9A-Z]{4}$")] | None = Field(
        default=None, description="The referral code of the member who referred this one."
    )


class PurchaseStats(BaseModel):
    first_purchase_at: datetime | None = None
    last_purchase_at: datetime | None = None
    purchase_count: int = 0


class TierMove(BaseModel):
    """One move on the ladder, as the member's tier history keeps it."""

    at: datetime
    from_tier: str
    to_tier: str
    direction: str = Field(description="up or down")
    reason: str = Field(description="earn, review or refund")
    value: Decimal = Field(description="The qualifying value that decided it, in the measure's unit.")
    measure: str = Field(description="points, or spend")
    currency: str | None = Field(default=None, description="The currency of a spend value.")


class Member(BaseModel):
    member_id: str
    external_id: str
    profile: Profile
    consent: Consent
    birthday: date | None = None
    referral_code: str
    referred_by: str | None = None
    tier: str
    tier_upgraded_at: datetime | None = None
    tier_history: list[TierMove] = Field(default_factory=list)
    enrolled_at: datetime
    balance: Balance = Field(default_factory=Balance)
    purchases: PurchaseStats = Field(default_factory=PurchaseStats)

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)
