"""The correlation id: the one id that follows a change from where it came in (an API request, a commerce event on
the bus) through the items it wrote and the table's stream to the domain events published for it
(docs/observability.md).

It is carried in a context variable, set at the handler's edge for the length of one request or one stream record,
so the store writes it onto the items of that change without any signature between the two naming it. Plain
Python: the DynamoDB toolkit reads it, and knows nothing of logging.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

ATTRIBUTE = "correlation_id"  # on the items a correlated change writes, and in the domain event's detail
_VALID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")  # a request id, an event id or a caller's UUID

_current: ContextVar[str | None] = ContextVar("correlation_id", default=None)


def valid(value: object) -> str | None:
    """`value` if it can be a correlation id (1-128 characters of ids: letters, digits, . _ : / -), else None: a
    caller's header never puts arbitrary text into logs and items."""
    return value if isinstance(value, str) and _VALID.fullmatch(value) else None


def current() -> str | None:
    return _current.get()


@contextmanager
def correlated(correlation_id: str | None) -> Iterator[str | None]:
    """Carry `correlation_id` (None: none) for the length of the block; what was carried before comes back after."""
    token = _current.set(valid(correlation_id))
    try:
        yield _current.get()
    finally:
        _current.reset(token)
