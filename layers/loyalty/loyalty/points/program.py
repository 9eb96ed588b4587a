"""Program configuration: how activities earn points, the tiers, promotions, and the rewards and expiry policies. One
validated, versioned document stored in the table (docs/program.md): replaced whole, never edited in place, every
version kept.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from itertools import pairwise
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from loyalty.core.errors import InvalidRequest
from loyalty.points.activities import ActivityType, LineItem
from loyalty.points.promotions import Promotion, Promotions

_ISO_CURRENCY = re.compile(r"[A-Z]{3}")
BASE_AMOUNT_QUANTUM = Decimal("0.001")  # amounts in the base currency, to the finest amount the API accepts
Multiplier = Annotated[Decimal, Field(ge=0, le=100)]
Perk = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$", description="A short slug, e.g. early-access.")]


class Tier(BaseModel):
    """A level of the ladder. What it takes to reach it and what it gives; the rules are loyalty.points.tiers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=40)
    threshold: int = Field(
        ge=0, description="Qualifying value needed to hold this tier: points, or whole units of the base currency."
    )
    earn_multiplier: Decimal = Field(default=Decimal(1), ge=1, le=10, description="Points earned are multiplied by it.")
    perks: tuple[Perk, ...] = Field(default=(), max_length=20)

    @field_validator("perks")
    @classmethod
    def _perks_are_unique(cls, perks: tuple[str, ...]) -> tuple[str, ...]:
        repeated = sorted({perk for perk in perks if perks.count(perk) > 1})
        if repeated:
            raise ValueError(f"perks must be unique: {', '.join(repeated)} listed more than once")
        return perks


DEFAULT_LADDER: tuple[Tier, ...] = (
    Tier(name="Insider", threshold=0),
    Tier(name="VIB", threshold=350),
    Tier(name="Rouge", threshold=1000),
)


def check_ladder(tiers: tuple[Tier, ...]) -> tuple[Tier, ...]:
    """A ladder starts at 0, so every member stands on it, and ascends strictly, so a value names one level; the
    names are unique because a member item keeps its tier by name."""
    rule = "tiers must start at threshold 0 and ascend strictly"
    if not tiers:
        raise ValueError(f"{rule}: the ladder is empty")
    if tiers[0].threshold != 0:
        raise ValueError(f"{rule}: the first, {tiers[0].name}, is at {tiers[0].threshold}")
    for lower, upper in pairwise(tiers):
        if upper.threshold <= lower.threshold:
            raise ValueError(f"{rule}: {upper.name} ({upper.threshold}) comes after {lower.name} ({lower.threshold})")
    names = [t.name for t in tiers]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"tier names must be unique: {', '.join(repeated)} named more than once")
    return tiers


class QualifyingMeasure(StrEnum):
    POINTS = "points"  # points earned, net of reversals (points_by_month)
    SPEND = "spend"  # net spend in the program's base currency (spend_by_month)


class QualifyingWindow(StrEnum):
    ROLLING_12_MONTHS = "rolling_12_months"  # the current UTC calendar month and the 11 before it
    CALENDAR_YEAR = "calendar_year"  # the current UTC calendar year


class ReviewCadence(StrEnum):
    MONTHLY = "monthly"  # on the 1st, 00:00 UTC
    YEARLY = "yearly"  # on review_month/review_day, 00:00 UTC


_DAYS_EVERY_YEAR = {2: 28, 4: 30, 6: 30, 9: 30, 11: 30}  # other months: 31


class TierRules(BaseModel):
    """How members qualify for a tier and when they can lose it (docs/tiers.md).

    The default is a rolling 12-month window reviewed monthly: the monthly maps move one month at a time, so a
    monthly review is the cadence at which each review sees a window that has just closed, and no member holds a
    tier more than a month beyond what their last 12 months support. The grace of 3 months keeps a member who has
    just been upgraded, on a window whose oldest month is about to leave it, from being moved down days later.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    measure: QualifyingMeasure = QualifyingMeasure.POINTS
    window: QualifyingWindow = QualifyingWindow.ROLLING_12_MONTHS
    review: ReviewCadence = ReviewCadence.MONTHLY
    review_month: int = Field(default=1, ge=1, le=12, description="Month of a yearly review.")
    review_day: int = Field(default=1, ge=1, le=31, description="Day of a yearly review.")
    grace_months: int = Field(
        default=3,
        ge=0,
        le=24,
        description="A member upgraded less than this many months before a review keeps the tier.",
    )
    refund_can_downgrade: bool = Field(default=False, description="A refund alone never lowers a tier unless set.")

    @model_validator(mode="after")
    def _review_is_a_date_every_year(self) -> TierRules:
        if self.review is ReviewCadence.MONTHLY and (self.review_month, self.review_day) != (1, 1):
            raise ValueError(
                "review_month and review_day are for a yearly review; a monthly review is on the 1st of every month"
            )
        last_day = _DAYS_EVERY_YEAR.get(self.review_month, 31)
        if self.review_day > last_day:
            raise ValueError(
                f"review_day {self.review_day} is not in month {self.review_month} every year (at most {last_day})"
            )
        if self.window is QualifyingWindow.CALENDAR_YEAR and (self.review, self.review_month, self.review_day) != (
            ReviewCadence.YEARLY,
            1,
            1,
        ):
            raise ValueError(
                "a calendar_year window is reviewed yearly on January 1 (review_month 1, review_day 1), when its "
                "year closes: a review on another day would judge a year not yet over"
            )
        return self


class TierPolicy(TierRules):
    """The ladder and its rules together: what loyalty.points.tiers decides with. ProgramConfig.tier_policy."""

    ladder: tuple[Tier, ...] = DEFAULT_LADDER
    currency: str = Field(default="USD", description="The base currency a spend measure counts in.")

    @field_validator("ladder")
    @classmethod
    def _ladder_ascends_from_zero(cls, ladder: tuple[Tier, ...]) -> tuple[Tier, ...]:
        return check_ladder(ladder)

    @field_validator("currency")
    @classmethod
    def _currency_is_iso(cls, code: str) -> str:
        if not _ISO_CURRENCY.fullmatch(code):
            raise ValueError(f"currency {code!r} is not an ISO 4217 code")
        return code


class ExpiryMode(StrEnum):
    AFTER_EARN = "after_earn"  # each earn expires `months` after it was earned, oldest first
    AFTER_LAST_ACTIVITY = "after_last_activity"  # the whole balance expires `months` after the member's last activity


class ExpiryPolicy(BaseModel):
    """When points expire: never, by default. Credits are kept in lots by expiry date and a daily job books what
    expired (loyalty.points.lots, docs/expiry.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = False
    mode: ExpiryMode = ExpiryMode.AFTER_EARN
    months: int = Field(default=12, ge=1, le=120, description="Months after the earn or the last activity.")
    round_to_period_end: bool = Field(
        default=False, description="Expire at the end of the UTC calendar month the expiry date falls in."
    )
    warn_days: int = Field(
        default=30, ge=0, le=365, description="PointsExpiringSoon this many days before points expire (0: no warning)."
    )


class RewardsPolicy(BaseModel):
    """What holds for every redemption, whatever the reward. Kept and validated with the program; the redemption
    path does not read it yet (docs/program.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pending_days: int = Field(
        default=0,
        ge=0,
        le=365,
        description="Days a purchase's points stay pending (a return window) before they can be redeemed; 0: at once.",
    )


class ProgramConfig(BaseModel):
    """What a purchase or an engagement activity is worth, the tiers, the promotions, the rewards and expiry
    policies. Changed as data, without a deploy. A key it does not know is refused, so that a misspelt section is
    an error rather than a section silently left at its defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = Field(default=1, ge=1)
    base_currency: str = "USD"
    # Points per whole currency unit, per accepted currency. A purchase in a currency not listed is refused.
    points_per_unit: dict[str, Annotated[Decimal, Field(gt=0, le=1000)]] = Field(
        default_factory=lambda: {"USD": Decimal(1)}
    )
    # Units of the base currency one unit of each other accepted currency is worth. Spend is kept in the base
    # currency (the member's monthly and category spend, a spend tier measure), converted at these rates when a
    # purchase is written; points are priced in the purchase's own currency (points_per_unit).
    exchange_rates: dict[str, Annotated[Decimal, Field(gt=0, le=1_000_000, allow_inf_nan=False)]] = Field(
        default_factory=dict, validate_default=True
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
    # Validated even when left out: a promotion's audience must name tiers of the ladder in force (the default one).
    tiers: tuple[Tier, ...] = Field(default=DEFAULT_LADDER, validate_default=True)
    tier_rules: TierRules = Field(default_factory=TierRules)
    expiry: ExpiryPolicy = Field(default_factory=ExpiryPolicy)
    rewards: RewardsPolicy = Field(default_factory=RewardsPolicy)

    @field_validator("points_per_unit")
    @classmethod
    def _currencies_are_iso(cls, rates: dict[str, Decimal]) -> dict[str, Decimal]:
        for code in rates:
            if not _ISO_CURRENCY.fullmatch(code):
                raise ValueError(f"currency {code!r} is not an ISO 4217 code")
        return rates

    @field_validator("exchange_rates")
    @classmethod
    def _every_other_accepted_currency_has_a_rate(
        cls, rates: dict[str, Decimal], info: ValidationInfo
    ) -> dict[str, Decimal]:
        """A rate for each accepted currency but the base (which converts at 1 and takes none), and for nothing
        else: a rate for a currency the program does not accept is a misspelling or a leftover. Reported beside
        every other problem of the document (a field validator reading the fields validated before it)."""
        base, accepted = info.data.get("base_currency"), info.data.get("points_per_unit")
        if base is None or accepted is None:
            return rates  # reported on their own fields
        problems = [
            f"{code} is the base currency: it converts at 1 and takes no rate" for code in rates if code == base
        ]
        problems += [
            f"{code} is not an accepted currency (points_per_unit)"
            for code in rates
            if code != base and code not in accepted
        ]
        missing = sorted(code for code in accepted if code != base and code not in rates)
        if missing:
            problems.append(f"accepted currencies without a rate to {base}: {', '.join(missing)}")
        if problems:
            raise ValueError("; ".join(problems))
        return rates

    @field_validator("tiers")
    @classmethod
    def _tiers_ascend_from_zero(cls, tiers: tuple[Tier, ...]) -> tuple[Tier, ...]:
        return check_ladder(tiers)

    @field_validator("tiers")
    @classmethod
    def _audiences_name_tiers_of_the_ladder(cls, tiers: tuple[Tier, ...], info: ValidationInfo) -> tuple[Tier, ...]:
        """A promotion for a tier the ladder lacks would match no one. A field validator that reads the promotions
        (validated before the ladder), so that this is reported beside every other problem of the document."""
        names = {tier.name for tier in tiers}
        promotions: tuple[Promotion, ...] = info.data.get("promotions", ())
        unknown = [
            f"{promotion.promotion_id} ({', '.join(sorted(promotion.tiers - names))})"
            for promotion in promotions
            if promotion.tiers - names
        ]
        if unknown:
            raise ValueError(f"promotions name tiers the ladder lacks: {'; '.join(unknown)}")
        return tiers

    def in_base_currency(self, amount: Decimal, currency: str) -> Decimal:
        """`amount` of `currency` in the base currency, at the program's rate, to 0.001 (half to even); the base
        currency as it is. InvalidRequest (field `currency`) for a currency the program has no rate for."""
        if currency == self.base_currency:
            return amount
        rate = self.exchange_rates.get(currency)
        if rate is None:
            raise InvalidRequest(f"currency {currency} has no exchange rate to {self.base_currency}", field="currency")
        return (amount * rate).quantize(BASE_AMOUNT_QUANTUM, rounding=ROUND_HALF_EVEN)

    @property
    def entry_tier(self) -> str:
        return self.tiers[0].name

    @property
    def tier_policy(self) -> TierPolicy:
        """The ladder, its rules, and the base currency a spend measure counts in."""
        return TierPolicy(ladder=self.tiers, currency=self.base_currency, **self.tier_rules.model_dump())


READ_ONLY = ("version", "replaced_at", "replaced_by")  # what a read gives and a write may send back, ignored
# A document is kept whole in one item (twice: in force, and as its version), and DynamoDB items hold 400 KB.
MAX_DOCUMENT_BYTES = 300_000


class ProgramDocument(ProgramConfig):
    """The program document as the admin API reads and writes it: the program, its version, and when and by whom
    that version was put in force. A replace may send back what it read: `version`, `replaced_at` and
    `replaced_by` are then ignored (the version replaced travels in If-Match)."""

    replaced_at: AwareDatetime | None = Field(
        default=None, description="When this version was put in force; null for the built-in defaults."
    )
    replaced_by: str | None = Field(
        default=None, description="Who put it in force (the admin token's subject); null for the built-in defaults."
    )


class ProgramVersion(BaseModel):
    """One version of the program as it is kept: the document, and when and by whom it was put in force (both None
    for the built-in defaults, version 1, which no one wrote)."""

    model_config = ConfigDict(frozen=True)

    program: ProgramConfig
    replaced_at: datetime | None = None
    replaced_by: str | None = None

    @property
    def version(self) -> int:
        return self.program.version

    def public(self) -> dict[str, Any]:
        """As the admin API shows it (ProgramDocument)."""
        replaced_at = self.replaced_at.isoformat() if self.replaced_at is not None else None
        return {**self.program.model_dump(mode="json"), "replaced_at": replaced_at, "replaced_by": self.replaced_by}


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
