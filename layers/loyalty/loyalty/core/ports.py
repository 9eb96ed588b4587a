"""The ports every context shares. Today the event bus; each context declares its own store port
(points/ports.py, segments/ports.py). The adapters implement them: EventBridge in loyalty.adapters, an in-memory
twin in loyalty.adapters.memory for tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from loyalty.core.events import DomainEvent


class EventBus(Protocol):
    def publish(self, events: Sequence[DomainEvent]) -> list[int]:
        """Publish every event; answer the indexes of those the bus did not accept, for the caller to retry."""
        ...
