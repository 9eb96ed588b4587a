"""What every idempotent write shares: the answer given (and given again on a replay), the request's fingerprint,
which tells a replay from a different request under the same key, and the claim that holds both, written with the
change it guards (docs/idempotency.md). How a store lays a claim out is the store's business."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from loyalty.core.errors import IdempotencyKeyReused


@dataclass(frozen=True)
class Claim:
    """An idempotency claim: the request's key and fingerprint, and the answer to give again on a replay. A store
    writes it in the same transaction as the change it guards, on condition that the key is not claimed yet."""

    key: str
    fingerprint: str
    status: int
    body: dict[str, Any]
    expires: bool = True  # keys from a header expire; natural ids (order and refund ids) are kept for good

    def answering(self, status: int, body: dict[str, Any]) -> Claim:
        """The same claim holding another answer (a refusal, say)."""
        return replace(self, status=status, body=body)


@dataclass(frozen=True)
class Replay:
    """The first answer to a request that has already been carried out (or refused for a business reason)."""

    status: int
    body: dict[str, Any]


def key_reused() -> IdempotencyKeyReused:
    """The refusal of a key that came back with another request (its fingerprint differs)."""
    return IdempotencyKeyReused("this Idempotency-Key was used for a different request", field="Idempotency-Key")


@dataclass(frozen=True)
class Outcome:
    """An answer for the caller: the status and body of the first time this request was carried out."""

    status: int
    body: dict[str, Any]
    replayed: bool = False


def _canonical(value: Any) -> Any:
    """Equal values, equal text: 42, 42.0 and "42.00" are one amount."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def fingerprint(*parts: Any) -> str:
    canonical = json.dumps(_canonical(parts), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
