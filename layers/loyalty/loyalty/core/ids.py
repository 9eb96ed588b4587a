"""Identifiers: time-ordered entry ids, member ids, voucher and referral codes."""

from __future__ import annotations

import secrets
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Codes a person reads aloud or types: no 0/O, 1/I/L, U.
_CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"


_RANDOM_BITS = 80
_last = (0, 0)  # the milliseconds and the random part of the last ULID made here
_last_lock = threading.Lock()


def ulid(now_ms: int | None = None) -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, 26 Crockford characters, sortable by time.

    Monotonic within a process (the ULID spec's monotonic mode): a second ULID in the same millisecond is the
    previous one plus one, so two ledger entries written one after the other sort in that order."""
    global _last
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    with _last_lock:
        last_ms, last_random = _last
        if ms == last_ms and last_random + 1 < 1 << _RANDOM_BITS:
            random = last_random + 1
        else:
            random = secrets.randbits(_RANDOM_BITS)
        _last = (ms, random)
    value = (ms << _RANDOM_BITS) | random
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def member_id() -> str:
    return "m_" + ulid().lower()


def human_code(groups: int, size: int = 4) -> str:
    return "-".join("".join(secrets.choice(_CODE_ALPHABET) for _ in range(size)) for _ in range(groups))


def voucher_code() -> str:
    """12 characters of a 30-letter alphabet: about 59 bits, unguessable at any realistic rate."""
    return human_code(3)


def referral_code() -> str:
    return human_code(2)
