"""Segment ids: `<family>:<slug>`, stable across refreshes, so membership items and events can key on them."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

_SLUG = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
MAX_SLUG_LENGTH = 64

RFM = "rfm"
POINTS = "points"
LIFECYCLE = "lifecycle"
RULE = "rule"
PREDICTION = "prediction"
FAMILIES = (RFM, POINTS, LIFECYCLE, RULE, PREDICTION)
CHURN_RISK = "churn-risk"  # prediction:churn-risk


def _slug(value: str) -> str:
    if len(value) > MAX_SLUG_LENGTH or not _SLUG.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a slug: lowercase letters and digits in words joined by single hyphens, "
            f"at most {MAX_SLUG_LENGTH} characters (e.g. win-back-2026)"
        )
    return value


Slug = Annotated[str, AfterValidator(_slug)]


def segment_id(family: str, slug: str) -> str:
    return f"{family}:{slug}"
