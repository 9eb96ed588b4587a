"""Members: who they are, what they consented to, and where they stand."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
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


class ProfilePatch(Profile):
    """A change of the profile as a JSON merge patch (RFC 7396): a field left out stays as it is, a field set to
    null is removed, any other value replaces it and is validated as the profile validates it."""

    def changes(self) -> ProfileChanges:
        given = {name: getattr(self, name) for name in sorted(self.model_fields_set)}
        return ProfileChanges(
            values={name: value for name, value in given.items() if value is not None},
            removed=frozenset(name for name, value in given.items() if value is None),
        )


@dataclass(frozen=True)
class ProfileChanges:
    """What a profile patch sets (`values`) and removes (`removed`), field by field, as a store writes it."""

    values: Mapping[str, str] = field(default_factory=dict)
    removed: frozenset[str] = frozenset()

    @property
    def empty(self) -> bool:
        return not self.values and not self.removed

    def applied_to(self, profile: Profile) -> Profile:
        kept = {k: v for k, v in profile.model_dump(exclude_none=True).items() if k not in self.removed}
        return Profile.model_validate({**kept, **self.values})


class ConsentChannel(StrEnum):
    """What a member consents to, one by one: a channel the program may write to them on, or profiling."""

    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"
    WHATSAPP = "whatsapp"
    PROFILING = "profiling"


class Consent(BaseModel):
    """Per-channel marketing consent, and consent to profiling; absent means no (docs/members.md)."""

    model_config = ConfigDict(extra="forbid")

    email: bool = False
    sms: bool = False
    push: bool = False
    whatsapp: bool = False
    profiling: bool = Field(
        default=False,
        description="Consent to segmentation and personalised offers: without it the member is in no behavioural "
        'segment and gets no prediction (docs/segments.md, "Profiling consent").',
    )

    def granted(self, channel: ConsentChannel) -> bool:
        return bool(getattr(self, channel.value))


ENROLLMENT_SOURCE = "enrollment"  # the source of the consents a member gave when enrolling


class ConsentChange(BaseModel):
    """One change of one consent, as the member's consent history keeps it: when, which, granted or withdrawn, and
    who made it (a role, never a person's id): no personal data beyond the member's partition it lives in."""

    model_config = ConfigDict(extra="forbid")

    change_id: str = Field(description="A ULID: the history is in its order, and it is the ConsentChanged event's id.")
    channel: ConsentChannel
    granted: bool
    at: datetime
    source: str = Field(
        description="Who made the change: member, admin or service (the caller's role), or enrollment (the consents "
        "given when enrolling)."
    )

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


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
