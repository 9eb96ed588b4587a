"""The rewards catalog: what members redeem points for, on what terms, and who may (docs/rewards.md).

A reward is validated data: its kind and the figures that kind needs, a UTC window, a stock, a per-member limit per
period and a tier gate. It holds its terms and the stock as last read; what a member redeemed in a period is a
counter the store keeps beside the member, and the redemption's own transaction moves both (loyalty.points.ports,
Redemption).

Every problem with a reward is reported at once, each at its field: a check that depends on another field (the
figures a kind needs or refuses, the window's end after its start) is a field validator that reads the fields
before it, so it runs beside the plain field checks instead of after them (as loyalty.points.promotions does).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from loyalty.core.errors import RewardExpired, RewardNotYetValid
from loyalty.points.program import Tier
from loyalty.points.promotions import CapPeriod, period_key

MAX_STOCK: Final = 10_000_000
MAX_PER_MEMBER: Final = 1_000


class RewardKind(StrEnum):
    DISCOUNT_FIXED = "discount_fixed"  # `value` off an order, in `currency`
    DISCOUNT_PERCENT = "discount_percent"  # `percent` off an order
    FREE_PRODUCT = "free_product"  # a product, by `sku` (none for a bundle the store knows by the reward's name)
    EXCLUSIVE_OFFER = "exclusive_offer"  # an offer its name and description tell (early access, a private sale)
    EXPERIENCE = "experience"  # an event, `experience` (when, where); its capacity is the reward's `stock`
    DONATION = "donation"  # points given to `cause`: no voucher


# Kinds a stored reward may still carry from before they were renamed, read as today's (Reward.from_stored). The API
# takes today's names only.
LEGACY_KINDS: Final = {"discount": RewardKind.DISCOUNT_FIXED}


class LimitPeriod(StrEnum):
    """What a per-member limit counts over, in UTC."""

    LIFETIME = "lifetime"
    YEAR = "year"
    MONTH = "month"


def limit_key(period: LimitPeriod, now: datetime) -> str:
    """The counter a redemption at `now` counts against: "lifetime", "2026" or "2026-06"."""
    period = LimitPeriod(period)
    if period is LimitPeriod.LIFETIME:
        return "lifetime"
    return period_key(CapPeriod.YEAR if period is LimitPeriod.YEAR else CapPeriod.MONTH, now)


def limit_ends(period: LimitPeriod, now: datetime) -> datetime | None:
    """The first instant after the period `now` falls in (None for a lifetime): its counter is not read after it."""
    utc = now.astimezone(UTC)
    period = LimitPeriod(period)
    if period is LimitPeriod.YEAR:
        return datetime(utc.year + 1, 1, 1, tzinfo=UTC)
    if period is LimitPeriod.MONTH:
        year, month0 = divmod(utc.year * 12 + utc.month, 12)
        return datetime(year, month0 + 1, 1, tzinfo=UTC)
    return None


class Experience(BaseModel):
    """The event an experience reward admits its holder to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    starts_at: AwareDatetime = Field(description="When the event starts, stored in UTC; the reward closes then.")
    place: Annotated[str, Field(min_length=1, max_length=200)]

    @field_validator("starts_at")
    @classmethod
    def _in_utc(cls, moment: datetime) -> datetime:
        return moment.astimezone(UTC)


def _kind(info: ValidationInfo) -> RewardKind | None:
    kind = info.data.get("kind")
    return kind if isinstance(kind, RewardKind) else None


def _needs(info: ValidationInfo, present: bool, kinds: frozenset[RewardKind], what: str) -> None:
    """A figure `kinds` require and the other kinds refuse (nothing to say when the kind itself is invalid), so that a
    typo cannot pass silently."""
    kind = _kind(info)
    if kind is None:
        return
    if kind in kinds and not present:
        raise ValueError(f"{_a(kind)} reward needs its {what}")
    if kind not in kinds and present:
        names = " and ".join(sorted(k.value for k in kinds))
        raise ValueError(f"{_a(kind)} reward takes no {what} (only {names} rewards do)")


def _a(kind: RewardKind) -> str:
    return f"{'an' if kind.value[0] in 'aeiou' else 'a'} {kind.value}"


_FIXED: Final = frozenset({RewardKind.DISCOUNT_FIXED})
_PERCENT: Final = frozenset({RewardKind.DISCOUNT_PERCENT})
_EXPERIENCE: Final = frozenset({RewardKind.EXPERIENCE})
_DONATION: Final = frozenset({RewardKind.DONATION})


class RewardTerms(BaseModel):
    """A reward's terms, as an admin writes them (the id is the path's, the version the API's to give)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=120)]
    description: Annotated[str, Field(max_length=1000)] = ""
    kind: RewardKind
    cost_points: Annotated[int, Field(gt=0, le=10_000_000)] = Field(description="Points a redemption debits.")
    value: Annotated[Decimal, Field(gt=0, max_digits=15, decimal_places=3, allow_inf_nan=False)] | None = Field(
        default=None, validate_default=True, description="discount_fixed: the amount off, in `currency`."
    )
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = Field(
        default=None, validate_default=True, description="discount_fixed: the ISO 4217 code of `value`."
    )
    percent: Annotated[int, Field(ge=1, le=100)] | None = Field(
        default=None, validate_default=True, description="discount_percent: the share off an order, 1 to 100."
    )
    sku: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        default=None, validate_default=True, description="free_product: the product's SKU (none for a bundle)."
    )
    cause: Annotated[str, Field(min_length=1, max_length=120)] | None = Field(
        default=None, validate_default=True, description="donation: the cause the points are given to."
    )
    experience: Experience | None = Field(
        default=None, validate_default=True, description="experience: the event, when and where."
    )
    valid_from: AwareDatetime | None = Field(
        default=None, description="Offered and redeemable from this instant (inclusive), stored in UTC."
    )
    valid_until: AwareDatetime | None = Field(
        default=None,
        description="Offered and redeemable until this instant (exclusive), after valid_from, stored in UTC; an "
        "experience closes when its event starts at the latest.",
    )
    stock: Annotated[int, Field(ge=0, le=MAX_STOCK)] | None = Field(
        default=None,
        validate_default=True,
        description="Redemptions left; absent: unlimited. An experience's capacity. Set when the reward is created; "
        "after that, moved by redemptions and by the stock route, never by a replace.",
    )
    per_member_limit: Annotated[int, Field(ge=1, le=MAX_PER_MEMBER)] | None = Field(
        default=None, description="Redemptions of this reward per member per `limit_period`, at most; absent: none."
    )
    limit_period: LimitPeriod = Field(
        default=LimitPeriod.LIFETIME,
        validate_default=True,
        description="What per_member_limit counts over (UTC calendar year or month, or the member's lifetime).",
    )
    min_tier: Annotated[str, Field(min_length=1, max_length=40)] | None = Field(
        default=None,
        description="The lowest tier that may redeem it (a name on the program's ladder); any tier if absent.",
    )
    active: bool = Field(default=True, description="False once retired: kept for the ledger, offered to no one.")

    @field_validator("value")
    @classmethod
    def _value_for_fixed_discounts(cls, value: Decimal | None, info: ValidationInfo) -> Decimal | None:
        _needs(info, value is not None, _FIXED, "value")
        return value

    @field_validator("currency")
    @classmethod
    def _currency_for_fixed_discounts(cls, currency: str | None, info: ValidationInfo) -> str | None:
        _needs(info, currency is not None, _FIXED, "currency")
        return currency

    @field_validator("percent")
    @classmethod
    def _percent_for_percent_discounts(cls, percent: int | None, info: ValidationInfo) -> int | None:
        _needs(info, percent is not None, _PERCENT, "percent")
        return percent

    @field_validator("sku")
    @classmethod
    def _sku_for_products(cls, sku: str | None, info: ValidationInfo) -> str | None:
        kind = _kind(info)
        if sku is not None and kind is not None and kind is not RewardKind.FREE_PRODUCT:
            raise ValueError(f"{_a(kind)} reward takes no sku (only free_product rewards do)")
        return sku

    @field_validator("cause")
    @classmethod
    def _cause_for_donations(cls, cause: str | None, info: ValidationInfo) -> str | None:
        _needs(info, cause is not None, _DONATION, "cause")
        return cause

    @field_validator("experience")
    @classmethod
    def _event_for_experiences(cls, experience: Experience | None, info: ValidationInfo) -> Experience | None:
        _needs(info, experience is not None, _EXPERIENCE, "experience: when and where the event is")
        return experience

    @field_validator("valid_from", "valid_until")
    @classmethod
    def _in_utc(cls, moment: datetime | None) -> datetime | None:
        return None if moment is None else moment.astimezone(UTC)

    @field_validator("valid_until")
    @classmethod
    def _ends_after_start(cls, until: datetime | None, info: ValidationInfo) -> datetime | None:
        since = info.data.get("valid_from")
        if until is not None and since is not None and until <= since:
            raise ValueError(f"valid_until must be after valid_from ({since.isoformat()})")
        experience = info.data.get("experience")
        if until is not None and isinstance(experience, Experience) and until > experience.starts_at:
            raise ValueError(
                f"an experience closes when its event starts ({experience.starts_at.isoformat()}): valid_until "
                "cannot be later"
            )
        return until

    @field_validator("limit_period")
    @classmethod
    def _period_of_a_limit(cls, period: LimitPeriod, info: ValidationInfo) -> LimitPeriod:
        if period is not LimitPeriod.LIFETIME and "per_member_limit" in info.data and not info.data["per_member_limit"]:
            raise ValueError(f"a {period.value} period needs a per_member_limit to count against")
        return period


class Reward(RewardTerms):
    """A catalog entry: its id, its terms, and the version they were saved as (each change of terms adds one)."""

    reward_id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
    version: int = Field(default=1, ge=1, description="Optimistic version: a replace names it in If-Match.")

    @classmethod
    def from_stored(cls, values: Mapping[str, Any]) -> Reward:
        """A reward as a store keeps it: its own attributes only (not the table's keys), a legacy kind read as
        today's (LEGACY_KINDS), and version 1 for one stored before rewards had versions."""
        fields = {name: value for name, value in values.items() if name in cls.model_fields}
        fields["kind"] = LEGACY_KINDS.get(str(fields.get("kind")), fields.get("kind"))
        return cls.model_validate(fields)

    @property
    def closes_at(self) -> datetime | None:
        """The end of the window (exclusive): valid_until, or the event's start if that is sooner."""
        ends = [moment for moment in (self.valid_until, self.experience and self.experience.starts_at) if moment]
        return min(ends) if ends else None

    def is_open(self, now: datetime) -> bool:
        """Inside the window: valid_from <= now < closes_at."""
        return window_refusal(self, now) is None

    @property
    def in_stock(self) -> bool:
        return self.stock is None or self.stock > 0

    def is_offered(self, now: datetime) -> bool:
        """Active, inside its window and in stock (as read): what the member-facing catalog lists."""
        return self.active and self.is_open(now) and self.in_stock

    @property
    def lacks_capacity(self) -> bool:
        """An experience without a stock: its capacity is its stock, so the service refuses to store one (a rule of
        the reward as stored, not of the terms alone, since a replace keeps the stored stock; nor of the model, which
        also shows a reward's terms without its stock)."""
        return self.kind is RewardKind.EXPERIENCE and self.stock is None

    @property
    def gives_voucher(self) -> bool:
        return self.kind is not RewardKind.DONATION

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def window_refusal(reward: Reward, now: datetime) -> RewardNotYetValid | RewardExpired | None:
    """Why `now` is outside the reward's window, or None inside it."""
    if reward.valid_from is not None and now < reward.valid_from:
        return RewardNotYetValid(
            f"reward {reward.reward_id} is redeemable from {reward.valid_from.isoformat()}",
            field="reward_id",
            details={"valid_from": reward.valid_from.isoformat()},
        )
    closes_at = reward.closes_at
    if closes_at is not None and now >= closes_at:
        return RewardExpired(
            f"reward {reward.reward_id} closed at {closes_at.isoformat()}",
            field="reward_id",
            details={"valid_until": closes_at.isoformat()},
        )
    return None


# ---- tier gates ----------------------------------------------------------------------------------------------------


def allowed_tiers(reward: Reward, ladder: tuple[Tier, ...]) -> tuple[str, ...] | None:
    """The tiers that may redeem the reward: None for any; else the ladder's names from `min_tier` up (none at all
    for a gate naming a tier not on the ladder, as loyalty.points.tiers.next_reward reads it)."""
    if reward.min_tier is None:
        return None
    names = [tier.name for tier in ladder]
    if reward.min_tier not in names:
        return ()
    return tuple(names[names.index(reward.min_tier) :])


def tier_allows(reward: Reward, tier: str, ladder: tuple[Tier, ...]) -> bool:
    allowed = allowed_tiers(reward, ladder)
    return allowed is None or tier in allowed


@dataclass(frozen=True)
class Offer:
    """A reward as a member sees it in the catalog: whether their tier may redeem it."""

    reward: Reward
    tier_allows: bool


def offers(rewards: Iterable[Reward], now: datetime, tier: str, ladder: tuple[Tier, ...]) -> list[Offer]:
    """What a member in `tier` is offered, cheapest first: rewards active, inside their window and in stock. A reward
    gated above the tier is listed with tier_allows False, as something to reach for, except an exclusive offer,
    which only the tiers it is for see."""
    listed = []
    for reward in sorted(rewards, key=lambda r: (r.cost_points, r.name, r.reward_id)):
        if not reward.is_offered(now):
            continue
        allows = tier_allows(reward, tier, ladder)
        if allows or reward.kind is not RewardKind.EXCLUSIVE_OFFER:
            listed.append(Offer(reward, allows))
    return listed
