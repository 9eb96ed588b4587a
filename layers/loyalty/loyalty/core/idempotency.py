"""What every idempotent write shares: the answer given (and given again on a replay) and the request's
fingerprint, which tells a replay from a different request under the same key (docs/idempotency.md)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any


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
