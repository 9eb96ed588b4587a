"""SQS adapter for the segment refresh's work: one JSON message per worker and pass."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

_BATCH = 10  # SendMessageBatch takes at most 10 entries per call


class WorkQueue:
    def __init__(self, client: Any, queue_url: str):
        self._client = client
        self._url = queue_url

    def send(self, messages: Sequence[Mapping[str, Any]]) -> None:
        """Send every message, retrying the entries SQS refused; raise if some still did not get through (the
        caller's own retry then sends them again, and duplicates are harmless: the work is idempotent)."""
        for start in range(0, len(messages), _BATCH):
            pending = {
                str(index): json.dumps(message, separators=(",", ":"), sort_keys=True)
                for index, message in enumerate(messages[start : start + _BATCH])
            }
            for _ in range(5):
                response = self._client.send_message_batch(
                    QueueUrl=self._url,
                    Entries=[{"Id": key, "MessageBody": body} for key, body in pending.items()],
                )
                pending = {failure["Id"]: pending[failure["Id"]] for failure in response.get("Failed", [])}
                if not pending:
                    break
            if pending:
                raise RuntimeError(f"SQS refused {len(pending)} refresh messages")
