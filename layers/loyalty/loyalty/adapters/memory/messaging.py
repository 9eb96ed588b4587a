"""The bus and the queue in memory: they keep what they were given, in order, and can be told to refuse."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any

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


class RecordingQueue:
    """A MessageQueue that keeps each message as the JSON body SQS would carry, and hands them back in order."""

    def __init__(self) -> None:
        self._bodies: list[str] = []
        self.unavailable = False  # True: every send raises, as an SQS outage does
        self._lock = threading.Lock()

    def send(self, messages: Sequence[Mapping[str, Any]]) -> None:
        if self.unavailable:
            raise RuntimeError(f"the queue refused {len(messages)} messages")
        bodies = [json.dumps(message, separators=(",", ":"), sort_keys=True) for message in messages]
        with self._lock:
            self._bodies.extend(bodies)

    def receive(self) -> list[dict[str, Any]]:
        """Every message sent since the last receive, oldest first."""
        with self._lock:
            bodies, self._bodies = self._bodies, []
        return [json.loads(body) for body in bodies]
