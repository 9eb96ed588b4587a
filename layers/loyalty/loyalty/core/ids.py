"""Identifiers: time-ordered entry ids, member ids, voucher and referral codes."""

from __future__ import annotations

import secrets
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Codes a person reads aloud or types: no 0/O, 1/I/L, U.
_CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid(now_ms: int | None = None) -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, 26 Crockford characters, sortable by time."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | secrets.randbits(80)
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
