"""Instants as the table and the API write them."""

from __future__ import annotations

from datetime import UTC, datetime

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)  # history may be back-loaded, but not from before this


def timestamp(moment: datetime) -> str:
    """UTC, fixed width (years zero-padded), so that string order is time order inside DynamoDB conditions."""
    utc = moment.astimezone(UTC)
    return f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S.%f}Z"
