"""Earns and reverses points from the commerce system's OrderPlaced and OrderRefunded events.

Idempotent by order id (purchases) and by (order id, refund id) (refunds: `refund_id` is required, so the same
refund sent in two events reverses once). An order from a customer who is not a member earns nothing and is
acknowledged; so is a refund the ledger refuses for good (more than is left to refund on its order): retrying would
get the same answer, which is remembered under the refund's identity. Anything else that fails raises (a refund
that arrives before its order, a malformed detail), so Lambda retries it and then parks it in the dead-letter queue.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, model_validator

from loyalty.core.observability import from_bus_event, invocation, logger, metrics, record_outcome
from loyalty.points.activities import Purchase, Refund
from loyalty.runtime import loyalty_service


class _Customer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    member_id: str | None = None
    customer_id: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        default=None, description="The shopper's id in the commerce system: the member's external id."
    )

    @model_validator(mode="after")
    def _someone(self) -> _Customer:
        if not (self.member_id or self.customer_id):
            raise ValueError("an order event names member_id or customer_id")
        return self


class OrderPlacedDetail(_Customer, Purchase):
    model_config = ConfigDict(extra="ignore", frozen=True)


class OrderRefundedDetail(Refund):
    model_config = ConfigDict(extra="ignore", frozen=True)


class CommerceEvent(BaseModel):
    id: str
    detail_type: Literal["OrderPlaced", "OrderRefunded"] = Field(alias="detail-type")
    source: str
    detail: dict[str, Any]


@metrics.log_metrics(capture_cold_start_metric=True)
@invocation(correlation_id=from_bus_event)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    envelope = CommerceEvent.model_validate(event)
    service = loyalty_service()
    if envelope.detail_type == "OrderPlaced":
        placed = OrderPlacedDetail.model_validate({**envelope.detail, "type": "purchase"})
        member_id = placed.member_id or service.member_id_for_external(placed.customer_id or "")
        if member_id is None:
            logger.info("order from a non-member earns nothing", extra={"order_id": placed.order_id})
            return {"status": "ignored", "reason": "not a member"}
        purchase = Purchase.model_validate(placed.model_dump(include=set(Purchase.model_fields)))
        outcome = service.purchase(member_id, purchase)
    else:
        refund = OrderRefundedDetail.model_validate({**envelope.detail, "type": "refund"})
        outcome = service.refund(Refund.model_validate(refund.model_dump(include=set(Refund.model_fields))))
    record_outcome("purchase" if envelope.detail_type == "OrderPlaced" else "refund", outcome)
    if outcome.status >= 400:
        logger.warning(
            "order event refused",
            extra={"detail_type": envelope.detail_type, "code": outcome.body.get("code"), "replayed": outcome.replayed},
        )
        return {"status": outcome.status, "replayed": outcome.replayed, **outcome.body}
    logger.info("order event applied", extra={"detail_type": envelope.detail_type, "replayed": outcome.replayed})
    return {"status": outcome.status, "replayed": outcome.replayed, **outcome.body}
