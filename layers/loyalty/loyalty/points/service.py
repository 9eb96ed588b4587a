"""The loyalty application service: what the handlers call. It decides; the store writes atomically.

It depends on its store through a port (loyalty.points.ports.PointsStore): the composition root (loyalty.runtime)
hands it the DynamoDB store, unit tests an in-memory one.

Idempotency (docs/idempotency.md): every write names a claim key. Purchases are keyed by order id, whichever
door they come through (API or EventBridge); refunds by refund id; other API writes by the caller's
Idempotency-Key header, scoped to the operation and member; events by their EventBridge id. A claim holds a
fingerprint of the request and the first answer, written in the same transaction as the change.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from loyalty.core import ids
from loyalty.core.caching import TtlCache
from loyalty.core.errors import (
    ConfigVersionConflict,
    InsufficientPoints,
    InvalidRequest,
    LimitReached,
    LoyaltyError,
    MemberNotFound,
    OrderNotFound,
    OutOfStock,
    ProgramVersionNotFound,
    RefundExceedsOrder,
    StoreContention,
    TierTooLow,
    invalid_document,
)
from loyalty.core.idempotency import Claim, Outcome, Replay, fingerprint
from loyalty.core.instants import EARLIEST
from loyalty.points.activities import Activity, ActivityType, Adjustment, Engagement, Purchase, Refund
from loyalty.points.categories import OrderCategories, order_categories, refund_shares, taken_from_member
from loyalty.points.ledger import EntryKind, LedgerEntry, OrderRecord, plan_refund
from loyalty.points.lots import bucket_for, remaining
from loyalty.points.member_record import MemberStanding, month_index
from loyalty.points.members import (
    ENROLLMENT_SOURCE,
    ConsentChange,
    ConsentChannel,
    Enrollment,
    Member,
    ProfilePatch,
    TierMove,
)
from loyalty.points.ports import (
    BudgetSpent,
    BudgetUse,
    EarnGuards,
    ExternalIdTaken,
    HeadroomGuard,
    MemberLimit,
    PinnedStanding,
    PointsStore,
    ProgramVersionMoved,
    Redemption,
    ReferralCodeTaken,
    RefundBasisMoved,
    Reversal,
    RewardChanged,
    StandingMoved,
    StockChange,
    StockLevel,
    reward_not_found,
)
from loyalty.points.pricing import MemberContext, Pricing, PurchaseContext, price_purchase
from loyalty.points.program import (
    MAX_DOCUMENT_BYTES,
    READ_ONLY,
    ProgramConfig,
    ProgramVersion,
    QualifyingMeasure,
    activity_points,
)
from loyalty.points.promotions import PromotionKind
from loyalty.points.rewards import (
    Offer,
    Reward,
    RewardKind,
    RewardTerms,
    allowed_tiers,
    limit_ends,
    limit_key,
    offers,
    window_refusal,
)
from loyalty.points.tiers import after_earn, headroom_above, on_ladder, progress, qualifying_value, rank, window_months

CLOCK_SKEW = timedelta(minutes=5)
REFUND_ATTEMPTS = 12  # plans of one refund, each from fresh reads, before a 503 (concurrent refunds of its order)
EARN_ATTEMPTS = 12  # writes of one earn, each from the standing the last one found, before a 503
REDEEM_ATTEMPTS = 4  # plans of one redemption, each from the reward as stored, before a 503 (a reward being edited)


def _occurred(at: datetime | None, now: datetime) -> datetime:
    if at is None:
        return now
    if at > now + CLOCK_SKEW:
        raise InvalidRequest("occurred_at is in the future", field="occurred_at")
    if at < EARLIEST:
        raise InvalidRequest("occurred_at is before 1970", field="occurred_at")
    return at.astimezone(UTC)


class LoyaltyService:
    def __init__(
        self,
        store: PointsStore,
        *,
        cache_seconds: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.store = store
        self._clock = clock
        self._sleep = sleep
        self.program = TtlCache(lambda: store.get_program() or ProgramConfig(), cache_seconds)
        self.catalog = TtlCache(lambda: {r.reward_id: r for r in store.list_rewards()}, cache_seconds)

    # ---- members --------------------------------------------------------------------------------------------

    def enroll(self, enrollment: Enrollment) -> Outcome:
        """Enroll once per external id: the same external id again returns the member it made (200)."""
        referred_by = None
        if enrollment.referred_by:
            referred_by = self.store.member_id_for_referral(enrollment.referred_by)
            if referred_by is None:
                raise InvalidRequest("no member has this referral code", field="referred_by")
        existing = self.store.member_id_for_external(enrollment.external_id)
        if existing is not None:
            return self._enrolled_already(existing)
        for _ in range(5):
            member = Member(
                member_id=ids.member_id(),
                external_id=enrollment.external_id,
                profile=enrollment.profile,
                consent=enrollment.consent,
                birthday=enrollment.birthday,
                referral_code=ids.referral_code(),
                referred_by=referred_by,
                tier=self.program.get().entry_tier,
                enrolled_at=self._clock(),
            )
            program = self.program.get()
            consents = _consents_given(member)
            try:
                self.store.create_member(
                    member, headroom=headroom_above(program.tier_policy, 0), basis=program.version, consents=consents
                )
            except ReferralCodeTaken:
                continue
            except ExternalIdTaken:  # a concurrent enrolment of the same external id got there first
                existing = self.store.member_id_for_external(enrollment.external_id)
                if existing is None:
                    raise StoreContention("enrollment raced with an erasure; retry") from None
                return self._enrolled_already(existing)
            return Outcome(201, member.public())
        raise InvalidRequest("could not draw a unique referral code; retry")  # 30^8 codes: never in practice

    def _enrolled_already(self, member_id: str) -> Outcome:
        return Outcome(200, self.store.get_member(member_id).public(), replayed=True)

    def member(self, member_id: str) -> Member:
        return self.store.get_member(member_id)

    def member_view(self, member_id: str) -> dict[str, Any]:
        """The member, and where they stand: the tier, the next one, the progress bar, what keeps the tier at the
        next review, the next reward (loyalty.points.tiers.progress). One read."""
        standing = self.store.standing(member_id)
        member, program = standing.member, self.program.get()
        policy = program.tier_policy
        tier = on_ladder(member.tier, policy)
        bar = progress(
            tier,
            standing.aggregates,
            policy,
            self._clock(),
            self.rewards(),
            member.balance.available,
            upgraded_at=member.tier_upgraded_at,
        )
        held = remaining(standing.lots or {}, standing.lots_consumed)
        lots = [{"expires_on": lot.expires_on, "points": lot.points} for lot in held]
        return {**member.public(), "progress": bar.model_dump(mode="json"), "lots": lots}

    def ledger(self, member_id: str, limit: int, cursor: str | None) -> dict[str, Any]:
        self.store.get_member(member_id)  # 404 for an unknown member rather than an empty page
        entries, next_cursor = self.store.ledger_page(member_id, limit, cursor)
        return {"entries": [e.public() for e in entries], "next_cursor": next_cursor}

    # ---- the member's own profile and consents (docs/members.md) ----------------------------------------------

    def update_profile(self, member_id: str, patch: ProfilePatch, idempotency_key: str | None = None) -> Outcome:
        """Apply a merge patch to the member's profile in one conditional write (the member exists), and answer the
        member as they are then (a read after the write; 200).

        With an `idempotency_key`, the same request again changes nothing and answers the member as they are now,
        Idempotent-Replayed (as a repeated enrolment does): the claim keeps the request's fingerprint, never a copy
        of the member's personal data, which an erasure would otherwise have to find outside their partition."""
        changes = patch.changes()
        claim = None
        if idempotency_key:
            request = patch.model_dump(mode="json", exclude_unset=True)
            claim = Claim(f"profile:{member_id}:{idempotency_key}", fingerprint(member_id, request), 200, {})
        replay = None
        if claim is not None or not changes.empty:
            replay = self.store.update_profile(member_id, changes, claim)
        return Outcome(200, self.store.get_member(member_id).public(), replayed=replay is not None)

    def set_consent(self, member_id: str, channel: ConsentChannel, granted: bool, source: str) -> dict[str, Any]:
        """Grant or withdraw one consent. Setting it to what it already is records nothing new (`changed` false,
        no `change`): the request is idempotent by its value, so it needs no key. A withdrawn profiling consent
        takes the member out of behavioural segments at their re-evaluation (the write moves `revision`)."""
        change = ConsentChange(change_id=ids.ulid(), channel=channel, granted=granted, at=self._clock(), source=source)
        changed = self.store.set_consent(member_id, change)
        answer: dict[str, Any] = {"member_id": member_id, "channel": channel.value, "granted": granted}
        return {**answer, "changed": changed, "change": change.public() if changed else None}

    def consents(self, member_id: str, limit: int, cursor: str | None) -> dict[str, Any]:
        """The member's consents now, and a page of their history, newest first."""
        member = self.store.get_member(member_id)  # 404 for an unknown member rather than an empty history
        changes, next_cursor = self.store.consent_history(member_id, limit, cursor)
        return {
            "member_id": member_id,
            "consent": member.consent.model_dump(mode="json"),
            "history": [change.public() for change in changes],
            "next_cursor": next_cursor,
        }

    # ---- earning and reversing ----------------------------------------------------------------------------

    def record(self, member_id: str, activity: Activity, idempotency_key: str | None) -> Outcome:
        """Record an activity. `idempotency_key` is required except for purchases and refunds, whose order and
        refund ids are their natural keys."""
        if isinstance(activity, Purchase):
            return self.purchase(member_id, activity)
        if isinstance(activity, Refund):
            return self.refund(activity, member_id=member_id)
        if not idempotency_key:
            raise InvalidRequest("required for this activity", field="Idempotency-Key")
        now = self._clock()
        program = self.program.get()
        if isinstance(activity, Engagement):
            points = activity_points(program, activity.type)
            if points <= 0:
                raise InvalidRequest(f"the program awards no points for {activity.type.value}", field="type")
            entry = LedgerEntry(
                entry_id=ids.ulid(),
                member_id=member_id,
                kind=EntryKind.BONUS,
                points=points,
                created_at=now,
                activity=activity.type,
                reference=activity.reference,
                program_version=program.version,
                lot=bucket_for(program.expiry, now),
            )
            claim = Claim(
                f"activity:{member_id}:{idempotency_key}",
                fingerprint(member_id, activity.model_dump()),
                201,
                {"entry": entry.public()},
            )
            uses = Decimal(points) if program.tier_policy.measure is QualifyingMeasure.POINTS else Decimal(0)
            return self._earn(program, member_id, lambda _standing, _budgets: (entry, claim, None, None), uses, now)
        else:
            assert isinstance(activity, Adjustment)
            limit = program.max_adjustment_points
            if activity.points == 0 or abs(activity.points) > limit:
                raise InvalidRequest(f"must be non-zero and at most {limit} either way", field="points")
            entry = LedgerEntry(
                entry_id=ids.ulid(),
                member_id=member_id,
                kind=EntryKind.ADJUSTMENT,
                points=activity.points,
                created_at=now,
                activity=ActivityType.ADJUSTMENT,
                reason=activity.reason,
                program_version=program.version,
                lot=bucket_for(program.expiry, now) if activity.points > 0 else None,
            )
        key = f"activity:{member_id}:{idempotency_key}"
        return self._post(
            entry,
            Claim(key, fingerprint(member_id, activity.model_dump()), 201, {"entry": entry.public()}),
        )

    def purchase(self, member_id: str, purchase: Purchase) -> Outcome:
        """Earn on a purchase, priced by loyalty.points.pricing (program, tier, promotions) as of when it happened.

        Order id is the claim: the same order id for the same member, amount, currency and line items (in any order)
        is a replay; anything else under it, a conflict. Its spend is written in the program's base currency. One
        round trip unless the pricing needs the member (a tier multiplier, a promotion on now with an audience, a cap
        or a first-purchase rule) or the earn may cross a tier threshold: docs/tiers.md."""
        now = self._clock()
        occurred_at = _occurred(purchase.occurred_at, now)
        program = self.program.get()
        bought = PurchaseContext.of(purchase)
        price_purchase(program, bought, MemberContext(tier=program.entry_tier), occurred_at)  # refusals first
        spent = program.in_base_currency(purchase.amount, purchase.currency)
        categories = order_categories(purchase.line_items).converted(
            lambda amount: program.in_base_currency(amount, purchase.currency)
        )
        entry_id = ids.ulid()
        lot = bucket_for(program.expiry, now)
        spend = program.tier_policy.measure is QualifyingMeasure.SPEND
        uses = spent if spend else None

        def priced(standing: MemberStanding | None, budgets: dict[str, int] | None) -> _Priced:
            context = _member_context(standing, program, occurred_at)
            pricing = price_purchase(program, bought, context, occurred_at, budgets_left=budgets)
            entry = LedgerEntry(
                entry_id=entry_id,
                member_id=member_id,
                kind=EntryKind.EARN,
                points=pricing.points,
                created_at=now,
                activity=ActivityType.PURCHASE,
                order_id=purchase.order_id,
                program_version=program.version,
                breakdown=[{"rule": line.rule, "points": line.points} for line in pricing.breakdown],
                lot=lot,
            )
            order = OrderRecord(
                order_id=purchase.order_id,
                member_id=member_id,
                amount=purchase.amount,
                currency=purchase.currency,
                base_amount=spent,
                base_currency=program.base_currency,
                points=pricing.points,
                occurred_at=occurred_at,
                category_totals=categories.totals,
                other_categories_total=categories.other,
                lot=lot,
            )
            claim = Claim(
                f"order:{purchase.order_id}",
                purchase_fingerprint(member_id, purchase),
                201,
                {"entry": entry.public()},
                expires=False,
            )
            return entry, claim, order, pricing

        member_priced = _prices_by_member(program, occurred_at)
        return self._earn(program, member_id, priced, uses, occurred_at, member_priced=member_priced)

    def _earn(
        self,
        program: ProgramConfig,
        member_id: str,
        priced: Callable[[MemberStanding | None, dict[str, int] | None], _Priced],
        uses: Decimal | None,
        at: datetime,
        *,
        member_priced: bool = False,
    ) -> Outcome:
        """Write an earn with its tier standing and its promotions' counters (docs/tiers.md, "One round trip").

        First without a read, guarded by the member's headroom before the next threshold, unless the pricing needs
        the member (`member_priced`: then the member is read first). If the guard fails (the earn may cross a
        threshold, the program changed, an item from before tiers moved), the store hands back the member as it
        found them and the earn is written again pinned to that revision, with the exact standing and, if a
        threshold is crossed, the move up in the same transaction. `uses` is the qualifying units the earn adds
        (None: its points, once priced)."""
        policy = program.tier_policy
        standing = self.store.standing(member_id) if member_priced else None
        budgets: dict[str, int] | None = None
        for attempt in range(EARN_ATTEMPTS):
            if attempt > 1:  # members earning at once around a threshold: let the others' writes land first
                self._sleep(random.uniform(0, min(0.1, 0.002 * 2**attempt)))
            entry, claim, order, pricing = priced(standing, budgets)
            units = uses if uses is not None else Decimal(entry.points)
            tiered = len(policy.ladder) > 1
            guards = EarnGuards(
                headroom=HeadroomGuard(program.version, units) if standing is None and tiered else None,
                pinned=None if standing is None else self._pinned(standing, program, units, at, pricing),
                budgets=_budget_uses(program, pricing),
            )
            try:
                replay = self.store.post(entry, claim, order, guards)
            except StandingMoved as moved:
                standing = moved.standing
                room = standing.headroom
                if not member_priced and standing.basis == program.version and room is not None and room > units:
                    standing = None  # another earn moved the member on meanwhile: this one fits again, unread
                continue
            except BudgetSpent:
                budgeted = {p.promotion_id: p.budget for p in program.promotions if p.budget is not None}
                given = self.store.budgets_given(budgeted)
                budgets = {pid: max(0, budget - given.get(pid, 0)) for pid, budget in budgeted.items()}
                continue
            except InsufficientPoints as refusal:
                return self._refuse(claim, refusal, entry.created_at)
            if replay is not None:
                return _replayed(replay)
            return Outcome(claim.status, claim.body)
        raise StoreContention("the member kept changing during the earn; retry")

    def _pinned(
        self, standing: MemberStanding, program: ProgramConfig, units: Decimal, at: datetime, pricing: Pricing | None
    ) -> PinnedStanding:
        """The standing an earn leaves, from the member as read: the qualifying value after it (the earn counts if
        its month is in the window), the move up it makes if it reaches a threshold, the headroom after it, and
        each capped promotion's counter for its period (the whole map, pinned by the revision)."""
        now = self._clock()
        policy = program.tier_policy
        tier = on_ladder(standing.member.tier, policy)
        value = qualifying_value(standing.aggregates, policy, now)
        if month_index(at) in window_months(policy, now):
            value += units if policy.measure is QualifyingMeasure.SPEND else int(units)
        change = after_earn(tier, value, policy)
        move = None
        if change is not None:
            move = TierMove(
                at=now,
                from_tier=change.from_tier,
                to_tier=change.to_tier,
                direction=change.direction.value,
                reason=change.reason.value,
                value=Decimal(change.value),
                measure=change.measure.value,
                currency=change.currency,
            )
            tier = change.to_tier
        live = {p.promotion_id for p in program.promotions}
        usage = {key: n for key, n in standing.promotion_usage.items() if key.split("#", 1)[0] in live}
        for award in pricing.promotions if pricing is not None else ():
            if award.cap_key is not None:
                key = f"{award.promotion_id}#{award.cap_key}"
                usage[key] = usage.get(key, 0) + award.points
        return PinnedStanding(
            revision=standing.revision,
            basis=program.version,
            headroom=headroom_above(policy, value, tier),
            move=move,
            usage=usage,
        )

    def refund(self, refund: Refund, *, member_id: str | None = None) -> Outcome:
        """Reverse a refund's share of its order's points. The refund's identity is (order id, refund id), whichever
        door it comes through, so the same refund sent again, by a retried call or a second event, reverses once.

        Planned here from what the store reads (the order, the member's balance and category spend), written by the
        store pinned to those reads; if either moved meanwhile, planned again from fresh reads (docs/ledger.md). The
        refund that completes an order's refunds also takes the purchase out of the member's purchase counts: a
        fully refunded order no longer counts as a purchase (first and last purchase moments stay: docs/ledger.md)."""
        claim = Claim(
            f"refund:{refund.order_id}:{refund.refund_id}",
            fingerprint(refund.order_id, refund.amount),
            0,
            {},
            expires=False,  # a refund's identity is kept as long as its order
        )
        now = self._clock()
        for _ in range(REFUND_ATTEMPTS):
            replay = self.store.replay(claim)
            if replay is not None:
                return _replayed(replay)
            order = self.store.get_order(refund.order_id)
            if order is None or (member_id is not None and order.member_id != member_id):
                raise OrderNotFound(f"order {refund.order_id} not found", field="order_id")
            holdings = self.store.holdings(order.member_id)
            try:
                plan = plan_refund(order, refund.amount, holdings.available)
            except RefundExceedsOrder as refusal:
                return self._refuse(claim, refusal, now)
            entry = LedgerEntry(
                entry_id=ids.ulid(),
                member_id=order.member_id,
                kind=EntryKind.REVERSAL,
                points=-plan.reverse,
                created_at=now,
                order_id=order.order_id,
                refund_id=refund.refund_id,
                unrecovered=plan.unrecovered,
            )
            body = {
                "entry": entry.public(),
                "points_due": plan.due,
                "points_reversed": plan.reverse,
                "points_unrecovered": plan.unrecovered,
            }
            ordered = OrderCategories(order.category_totals, order.other_categories_total)
            shares = refund_shares(ordered, order.amount, order.refunded_amount, refund.amount)
            by_name, other = taken_from_member(shares, holdings.spend_by_category, holdings.spend_other_categories)
            reversal = Reversal(
                entry=entry,
                claim=claim.answering(201, body),
                order=order,
                amount=refund.amount,
                due=plan.due,
                taken=OrderCategories(by_name, other),
                spend=order.spend_refunded_by(refund.amount),
                cancels_purchase=order.refunded_in_full_by(refund.amount),
                first_purchase=holdings.first_order_id == order.order_id,
            )
            try:
                replay = self.store.reverse(reversal)
            except RefundBasisMoved:
                continue
            return _replayed(replay) if replay is not None else Outcome(201, body)
        raise StoreContention("the order kept changing during the refund; retry")

    # ---- the program document (docs/program.md) --------------------------------------------------------------

    def program_document(self) -> ProgramVersion:
        """The version in force, with when and by whom it was put in force: read past the cache, as an admin
        editing it needs. The built-in defaults (version 1) until a document is stored."""
        stored = self.store.get_program()
        if stored is None:
            return ProgramVersion(program=ProgramConfig())
        return self.store.program_version(stored.version) or ProgramVersion(program=stored)

    def replace_program(
        self,
        document: Mapping[str, Any],
        if_version: int,
        replaced_by: str,
        *,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Replace the whole document, if the version in force is still `if_version`: an admin never silently
        overwrites a colleague's change. The new version is `if_version + 1`, kept with the others; the previous
        one stays in force on any refusal. Refusals: 409 version_conflict (with the version in force), 422 naming
        every problem of the document (`version`, `replaced_at` and `replaced_by` are ignored, as a read gives
        them back).

        With an `idempotency_key`, the same request again returns the first answer and changes nothing. A 409 is
        not kept under the key: versions only move forward, so the same request is refused again anyway."""
        written = {name: value for name, value in document.items() if name not in READ_ONLY}
        claim = None
        if idempotency_key:
            claim = Claim(f"program:{idempotency_key}", fingerprint(replaced_by, if_version, written), 200, {})
            replay = self.store.replay(claim)
            if replay is not None:
                return _replayed(replay)
        stored = self.store.get_program()
        current = stored or ProgramConfig()
        if current.version != if_version:
            raise _stale(current.version, if_version)
        try:
            program = ProgramConfig.model_validate({**written, "version": current.version + 1})
        except ValidationError as error:
            raise invalid_document(error) from None
        size = len(program.model_dump_json().encode())
        if size > MAX_DOCUMENT_BYTES:
            raise InvalidRequest(f"the document takes {size} bytes, more than {MAX_DOCUMENT_BYTES}", field="document")
        kept = ProgramVersion(program=program, replaced_at=self._clock().astimezone(UTC), replaced_by=replaced_by)
        body = kept.public()
        try:
            if stored is None:
                self._keep_defaults()
            replay = self.store.put_program(
                program,
                replaces=current.version,
                replaced_at=kept.replaced_at,
                replaced_by=replaced_by,
                claim=claim.answering(200, body) if claim is not None else None,
            )
        except ProgramVersionMoved:
            moved = self.store.get_program()
            raise _stale(moved.version if moved is not None else current.version, if_version) from None
        self.program.clear()
        return _replayed(replay) if replay is not None else Outcome(200, body)

    def program_versions(self, limit: int, cursor: str | None) -> tuple[list[ProgramVersion], str | None]:
        """Every version, newest first: the built-in defaults as version 1 until a document is stored."""
        versions, next_cursor = self.store.program_versions(limit, cursor)
        if not versions and cursor is None and self.store.get_program() is None:
            return [ProgramVersion(program=ProgramConfig())], None
        return versions, next_cursor

    def program_version(self, version: int) -> ProgramVersion:
        """One version; ProgramVersionNotFound (404) for a version never in force."""
        found = self.store.program_version(version)
        if found is not None:
            return found
        stored = self.store.get_program()
        if stored is None and version == 1:
            return ProgramVersion(program=ProgramConfig())
        if stored is not None and stored.version == version:  # stored before versions were kept
            return ProgramVersion(program=stored)
        raise ProgramVersionNotFound(f"no version {version} of the program", field="version")

    def _keep_defaults(self) -> None:
        """Until the first replace, the built-in defaults are in force as version 1 without being stored. They are
        stored then, as version 1, so that the history holds every version that priced an entry. A concurrent
        first replace may have stored them first: the same defaults, or already a version 2, which the replace's
        own condition then refuses."""
        with contextlib.suppress(ProgramVersionMoved):
            self.store.put_program(ProgramConfig(), replaces=None)

    # ---- rewards ------------------------------------------------------------------------------------------

    def rewards(self) -> list[Reward]:
        """The rewards offered now (active, inside their window, in stock as cached), cheapest first."""
        now = self._clock()
        offered = (reward for reward in self.catalog.get().values() if reward.is_offered(now))
        return sorted(offered, key=lambda r: (r.cost_points, r.name, r.reward_id))

    def offers(self, member_id: str | None) -> list[Offer]:
        """The catalog as a member sees it (loyalty.points.rewards.offers): for a member, by their tier; for anyone
        else (a shopper not enrolled yet, staff, a token naming no member), by the tier a member starts at."""
        program = self.program.get()
        tier = program.entry_tier
        if member_id is not None:
            with contextlib.suppress(MemberNotFound):  # a token naming no member (erased, say) sees what anyone sees
                tier = self.store.get_member(member_id).tier
        return offers(self.catalog.get().values(), self._clock(), tier, program.tiers)

    def redeem(self, member_id: str, reward_id: str, idempotency_key: str) -> Outcome:
        """Redeem a reward (docs/rewards.md). Planned here from the cached catalog and program: the window, the
        tiers the gate allows, the member's counter for the period; written by the store in one transaction pinned
        to the reward's version and cost. A reward the cache has stale (replaced, retired, its stock made limited or
        unlimited) fails that pin, and the redemption is planned again from the reward as stored: the member gets
        the reward's terms as they are now, which is what a fresh cache would have given."""
        now = self._clock()
        claim = Claim(f"redeem:{member_id}:{idempotency_key}", fingerprint(member_id, reward_id), 0, {})
        reward = self._catalog_reward(reward_id)
        for _ in range(REDEEM_ATTEMPTS):
            if reward is None or not reward.active:
                return self._refuse(claim, reward_not_found(reward_id), now)
            outside = window_refusal(reward, now)
            if outside is not None:
                return self._refuse(claim, outside, now)
            redemption = self._redemption(member_id, reward, claim, now)
            try:
                replay = self.store.redeem(redemption)
            except RewardChanged as changed:
                self.catalog.clear()
                reward = changed.current
                continue
            except (OutOfStock, TierTooLow, LimitReached, InsufficientPoints) as refusal:
                return self._refuse(claim, refusal, now)
            return _replayed(replay) if replay is not None else Outcome(201, redemption.claim.body)
        raise StoreContention("the reward kept changing during the redemption; retry")

    def _catalog_reward(self, reward_id: str) -> Reward | None:
        reward = self.catalog.get().get(reward_id)
        if reward is None or not reward.active:
            self.catalog.clear()  # the refusal is remembered: look once more past the cache before giving it
            reward = self.catalog.get().get(reward_id)
        return reward

    def _redemption(self, member_id: str, reward: Reward, claim: Claim, now: datetime) -> Redemption:
        entry = LedgerEntry(
            entry_id=ids.ulid(),
            member_id=member_id,
            kind=EntryKind.REDEEM,
            points=-reward.cost_points,
            created_at=now,
            reward_id=reward.reward_id,
            voucher_code=ids.voucher_code() if reward.gives_voucher else None,
        )
        # The reward's terms as redeemed; not its stock, which this very redemption moves.
        body: dict[str, Any] = {"entry": entry.public(), "reward": reward.model_copy(update={"stock": None}).public()}
        if entry.voucher_code is not None:
            body["voucher_code"] = entry.voucher_code
        limit = None
        if reward.per_member_limit is not None:
            period = reward.limit_period
            limit = MemberLimit(limit_key(period, now), reward.per_member_limit, period, limit_ends(period, now))
        tiers = allowed_tiers(reward, self.program.get().tiers)
        return Redemption(entry, claim.answering(201, body), reward, tiers, limit)

    # ---- the catalog, for admins --------------------------------------------------------------------------

    def reward(self, reward_id: str) -> Reward:
        reward = self.store.get_reward(reward_id)
        if reward is None:
            raise reward_not_found(reward_id)
        return reward

    def rewards_page(self, limit: int, cursor: str | None) -> tuple[list[Reward], str | None]:
        """Every reward by id, retired and out of stock ones too, as stored now."""
        return self.store.rewards_page(limit, cursor)

    def save_reward(self, reward_id: str, terms: RewardTerms, if_match: int | None) -> tuple[Reward, bool]:
        """Create (`if_match` None: the id must be free) or replace (the stored version must be `if_match`) a reward;
        (the reward as stored, created). A replace keeps the stored stock: a stock in `terms` counts at creation
        only, since one read by the admin a while ago would undo the redemptions made since."""
        self._check_gate(terms.min_tier)
        if if_match is None:
            reward = _reward(reward_id, terms, version=1, stock=terms.stock)
            self.store.create_reward(reward)
            stored, created = reward, True
        else:
            current = self.store.get_reward(reward_id)  # None: not there (the replace says so) or not readable
            stock = current.stock if current is not None else terms.stock
            reward = _reward(reward_id, terms, version=if_match + 1, stock=stock)
            stored, created = self.store.replace_reward(reward, if_match), False
        self.catalog.clear()
        return stored, created

    def retire_reward(self, reward_id: str) -> Reward:
        """Retire, never delete: the ledger's entries name the reward, and a retired reward reads as it was."""
        retired = self.store.retire_reward(reward_id)
        self.catalog.clear()
        return retired

    def change_stock(self, reward_id: str, change: StockChange) -> Reward:
        if (
            isinstance(change, StockLevel)
            and change.stock is None
            and self.reward(reward_id).kind is RewardKind.EXPERIENCE
        ):
            raise InvalidRequest("an experience's stock is its capacity: it cannot be unlimited", field="unlimited")
        changed = self.store.change_stock(reward_id, change)
        self.catalog.clear()
        return changed

    def _check_gate(self, min_tier: str | None) -> None:
        """A gate names a tier on the program's ladder as it is now (a gate naming another opens to no one)."""
        ladder = [tier.name for tier in (self.store.get_program() or ProgramConfig()).tiers]
        if min_tier is not None and min_tier not in ladder:
            raise InvalidRequest(f"{min_tier!r} is not a tier of the program ({', '.join(ladder)})", field="min_tier")

    def _post(self, entry: LedgerEntry, claim: Claim, order: OrderRecord | None = None) -> Outcome:
        try:
            replay = self.store.post(entry, claim, order)
        except InsufficientPoints as refusal:
            return self._refuse(claim, refusal, entry.created_at)
        if replay is not None:
            return _replayed(replay)
        return Outcome(claim.status, claim.body)

    def _refuse(self, claim: Claim, refusal: LoyaltyError, now: datetime) -> Outcome:
        """A business refusal is an answer like a success (docs/idempotency.md): it is stored under the request's
        key, so a replay gets the same status and body whatever happened since, and changes nothing."""
        answer = claim.answering(refusal.status, refusal.body())
        replay = self.store.remember(answer, now)
        if replay is not None:
            return _replayed(replay)
        return Outcome(answer.status, answer.body)

    # ---- lookups for the event handlers -------------------------------------------------------------------

    def member_id_for_external(self, external_id: str) -> str | None:
        """The member enrolled under the commerce system's or the identity provider's id; None for a non-member."""
        return self.store.member_id_for_external(external_id)


def purchase_fingerprint(member_id: str, purchase: Purchase) -> str:
    """What makes an order id's request the same one: the member, the amount, the currency and the line items, in
    any order, amounts as canonical strings ("42.0" is "42"). An order without lines has the fingerprint it had
    before lines were part of it, so such an order recorded earlier still replays."""
    if not purchase.line_items:
        return fingerprint(member_id, purchase.amount, purchase.currency)
    lines = sorted(
        (line.sku or "", line.category or "", str(line.quantity), format(line.amount.normalize(), "f"))
        for line in purchase.line_items
    )
    return fingerprint(member_id, purchase.amount, purchase.currency, lines)


def _consents_given(member: Member) -> tuple[ConsentChange, ...]:
    """The consents a member gave when enrolling, as the first entries of their consent history (a consent not
    given is absent, which means no: nothing to record)."""
    return tuple(
        ConsentChange(
            change_id=ids.ulid(), channel=channel, granted=True, at=member.enrolled_at, source=ENROLLMENT_SOURCE
        )
        for channel in ConsentChannel
        if member.consent.granted(channel)
    )


def _stale(in_force: int, if_version: int) -> ConfigVersionConflict:
    return ConfigVersionConflict(
        f"the program is at version {in_force}, not {if_version}; read it again", details={"version": in_force}
    )


def _replayed(replay: Replay) -> Outcome:
    return Outcome(replay.status, replay.body, replayed=True)


_Priced = tuple[LedgerEntry, Claim, OrderRecord | None, Pricing | None]


def _prices_by_member(program: ProgramConfig, at: datetime) -> bool:
    """True if what a purchase at `at` earns depends on who makes it: a tier that multiplies, or a promotion on
    then with an audience, a cap per member, or a first-purchase rule."""
    if any(level.earn_multiplier != 1 for level in program.tiers):
        return True
    return any(
        p.is_on(at) and (p.tiers or p.segments or p.cap is not None or p.kind is PromotionKind.FIRST_PURCHASE_BONUS)
        for p in program.promotions
    )


def _member_context(standing: MemberStanding | None, program: ProgramConfig, at: datetime) -> MemberContext:
    """Who buys, for pricing: as read, or (no read: the pricing does not depend on the member) the entry tier."""
    if standing is None:
        return MemberContext(tier=program.entry_tier)
    policy = program.tier_policy
    tier = on_ladder(standing.member.tier, policy)
    level = policy.ladder[rank(tier, policy.ladder)]
    given: dict[str, int] = {}
    for promotion in program.promotions:
        cap_key = promotion.cap_key(at)
        if cap_key is not None:
            given[promotion.promotion_id] = standing.promotion_usage.get(f"{promotion.promotion_id}#{cap_key}", 0)
    return MemberContext(
        tier=tier,
        tier_multiplier=level.earn_multiplier,
        segments=standing.segments,
        first_purchase=standing.member.purchases.purchase_count == 0,
        given_in_period=given,
    )


def _budget_uses(program: ProgramConfig, pricing: Pricing | None) -> tuple[BudgetUse, ...]:
    if pricing is None:
        return ()
    budgets = {p.promotion_id: p.budget for p in program.promotions if p.budget is not None}
    return tuple(
        BudgetUse(award.promotion_id, award.points, budgets[award.promotion_id])
        for award in pricing.promotions
        if award.promotion_id in budgets
    )


def _reward(reward_id: str, terms: RewardTerms, *, version: int, stock: int | None) -> Reward:
    """The reward the terms make under this id, version and stock; a 422 naming the field at fault."""
    try:
        reward = Reward.model_validate(
            {**terms.model_dump(), "reward_id": reward_id, "version": version, "stock": stock}
        )
    except ValidationError as invalid:  # the terms were validated; the id is the path's, checked by the route
        problem = invalid.errors()[0]
        raise InvalidRequest(problem["msg"], field=".".join(map(str, problem["loc"]))) from None
    if reward.lacks_capacity:
        raise InvalidRequest("an experience reward needs a stock: its capacity", field="stock")
    return reward
