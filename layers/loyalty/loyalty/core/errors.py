"""Domain errors. Adapters turn AWS error codes into these; the HTTP edge turns these into status codes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


class LoyaltyError(Exception):
    """Base of every error the domain raises on purpose."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details or {}

    def body(self) -> dict[str, Any]:
        errors = [{"field": self.field, "reason": self.message}] if self.field else []
        return {"code": self.code, "message": self.message, "errors": errors, **self.details}


class InvalidRequest(LoyaltyError):
    status = 422
    code = "invalid_request"


class Unauthenticated(LoyaltyError):
    status = 401
    code = "unauthenticated"


class Forbidden(LoyaltyError):
    status = 403
    code = "forbidden"


class NotFound(LoyaltyError):
    status = 404
    code = "not_found"


class MemberNotFound(NotFound):
    code = "member_not_found"


class RewardNotFound(NotFound):
    code = "reward_not_found"


class OrderNotFound(NotFound):
    code = "order_not_found"


class Conflict(LoyaltyError):
    status = 409
    code = "conflict"


class InsufficientPoints(Conflict):
    code = "insufficient_points"


class RefundExceedsOrder(Conflict):
    """The refund asks for more than is left to refund on its order (the order is refunded in full, say)."""

    code = "refund_exceeds_order"


class OrderConflict(Conflict):
    """The order id is already recorded with other facts (member, amount, currency or line items)."""

    code = "order_conflict"


# Refusals of a redemption: each a state the member or the catalog is in now, which the same request could meet
# differently at another time (so 409, like insufficient points), each with a code the caller can act on.


class RewardNotYetValid(Conflict):
    code = "reward_not_yet_valid"


class RewardExpired(Conflict):
    code = "reward_expired"


class OutOfStock(Conflict):
    code = "out_of_stock"


class TierTooLow(Conflict):
    code = "tier_too_low"


class LimitReached(Conflict):
    """The member has redeemed this reward as often as its per-member limit allows in the current period."""

    code = "limit_reached"


class StockConflict(Conflict):
    """An admin's stock change the reward cannot take: below 0, above the most a stock holds, or unlimited stock."""

    code = "stock_conflict"


class ConsentRequired(Conflict):
    """The member has not consented to what the request needs (profiling, for a prediction): the refusal is about
    the member's choice, not the caller's rights, and lifts when the member consents."""

    code = "consent_required"


class IdempotencyKeyReused(LoyaltyError):
    """The same idempotency key came back with a different request."""

    status = 422
    code = "idempotency_key_reused"


class StoreContention(LoyaltyError):
    """Concurrent writes kept cancelling each other past the retry budget; safe to retry."""

    status = 503
    code = "contention"


class ConfigVersionConflict(LoyaltyError):
    status = 409
    code = "version_conflict"


class ProgramVersionNotFound(NotFound):
    code = "program_version_not_found"


class RefreshInProgress(LoyaltyError):
    status = 409
    code = "refresh_in_progress"


class SegmentNotFound(LoyaltyError):
    status = 404
    code = "segment_not_found"


class RefreshNotFound(LoyaltyError):
    status = 404
    code = "refresh_not_found"


def field_path(location: Iterable[Any]) -> str:
    """A pydantic error location as the API names fields: ("promotions", 0, "tiers") -> "promotions[0].tiers"."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def invalid_document(error: ValidationError) -> InvalidRequest:
    """A document (the segmentation document, the program) that failed validation, as the API's 422: every
    problem, each with its path and reason; the first also as the error's own field."""
    problems = [
        {"field": field_path(problem["loc"]) or "document", "reason": problem["msg"]} for problem in error.errors()
    ]
    failure = InvalidRequest(problems[0]["reason"], field=problems[0]["field"])
    failure.details = {"errors": problems}
    return failure
