"""EventBridge adapter: publishes domain events in batches and says which ones did not get through."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from loyalty.core.events import DomainEvent

_BATCH = 10  # PutEvents takes at most 10 entries per call


class EventPublisher:
    def __init__(self, client: Any, bus_name: str):
        self._client = client
        self._bus = bus_name

    def publish(self, events: Sequence[DomainEvent]) -> list[int]:
        """Publish all; return the indexes of the events EventBridge did not accept (to be retried)."""
        failed: list[int] = []
        for start in range(0, len(events), _BATCH):
            batch = events[start : start + _BATCH]
            try:
                response = self._client.put_events(Entries=[event.entry(self._bus) for event in batch])
            except Exception:  # the whole call failed: every event of this batch is retried
                failed.extend(range(start, start + len(batch)))
                continue
            for offset, result in enumerate(response.get("Entries", [])):
                if result.get("ErrorCode"):
                    failed.append(start + offset)
        return failed
