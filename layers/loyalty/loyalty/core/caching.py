"""Small caches for a warm Lambda container."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class TtlCache(Generic[T]):
    """Configuration read at most once per `seconds` per container, so hot paths make no config round trip."""

    def __init__(self, load: Callable[[], T], seconds: float, clock: Callable[[], float] = time.monotonic):
        self._load, self._seconds, self._clock = load, seconds, clock
        self._value: T | None = None
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def get(self) -> T:
        with self._lock:
            if self._value is None or self._clock() - self._loaded_at > self._seconds:
                self._value = self._load()
                self._loaded_at = self._clock()
            return self._value

    def clear(self) -> None:
        with self._lock:
            self._value = None
