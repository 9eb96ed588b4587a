"""The ports every context shares: the event bus and the work queue. Each context declares its own store port
(points/ports.py, segments/ports.py); the adapters implement them (EventBridge and SQS in loyalty.adapters, and
in-memory twins in loyalty.adapters.memory for the services' tests)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from loyalty.core.events import DomainEvent


class EventBus(Protocol):
    def publish(self, events: Sequence[DomainEvent]) -> list[int]:
        """Publish every event; answer the indexes of those the bus did not accept, for the caller to retry."""
        ...


class MessageQueue(Protocol):
    def send(self, messages: Sequence[Mapping[str, Any]]) -> None:
        """Send every message (JSON objects), or raise: the caller's retry sends them again, and the work they
        carry is idempotent, so a duplicate is harmless."""
        ...
