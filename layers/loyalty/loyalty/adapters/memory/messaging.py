"""The bus in memory: it keeps what it was given, in order, and can be told to refuse."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from loyalty.core.events import DomainEvent


class RecordingBus:
    """An EventBus that keeps the events it accepted. `refuse` holds event ids it will not accept (EventBridge
    refuses entries one by one: the rest of the batch still goes through)."""

    def __init__(self) -> None:
        self.published: list[DomainEvent] = []
        self.refuse: set[str] = set()
        self._lock = threading.Lock()

    def publish(self, events: Sequence[DomainEvent]) -> list[int]:
        failed = []
        with self._lock:
            for index, event in enumerate(events):
                if event.event_id in self.refuse:
                    failed.append(index)
                else:
                    self.published.append(event)
        return failed
