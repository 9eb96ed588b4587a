"""Environment configuration, parsed once per container into a typed model."""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import BaseModel, Field


class Settings(BaseModel):
    table_name: str = Field(min_length=3)
    event_bus_name: str = "default"
    config_cache_seconds: float = 60.0
    aws_read_timeout_seconds: float = Field(default=5.0, gt=0)
    refresh_state_machine_arn: str = Field(default="", description="The segment refresh's state machine.")
    refresh_workers: int = Field(default=16, ge=1, le=1000)
    refresh_page_size: int = Field(default=1000, ge=1, le=1000, description="Roster items per Scan page.")
    refresh_reserve_seconds: float = Field(
        default=60.0, ge=0, description="A share hands on a continuation when its invocation has less than this left."
    )
    allowed_origins: str = Field(default="", description="Comma-separated origins whose browsers may call the API.")
    tier_review_shares: int = Field(default=8, ge=1, le=1000, description="Roster shares of the tier review.")
    expiry_shares: int = Field(default=8, ge=1, le=1000, description="Roster shares of the daily points expiry.")


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings(
        table_name=os.environ.get("TABLE_NAME", ""),
        event_bus_name=os.environ.get("EVENT_BUS_NAME", "default"),
        config_cache_seconds=float(os.environ.get("CONFIG_CACHE_SECONDS", "60")),
        aws_read_timeout_seconds=float(os.environ.get("AWS_READ_TIMEOUT_SECONDS", "5")),
        refresh_state_machine_arn=os.environ.get("REFRESH_STATE_MACHINE_ARN", ""),
        refresh_workers=int(os.environ.get("REFRESH_WORKERS", "16")),
        refresh_page_size=int(os.environ.get("REFRESH_PAGE_SIZE", "1000")),
        refresh_reserve_seconds=float(os.environ.get("REFRESH_RESERVE_SECONDS", "60")),
        allowed_origins=os.environ.get("ALLOWED_ORIGINS", ""),
        tier_review_shares=int(os.environ.get("TIER_REVIEW_SHARES", "8")),
        expiry_shares=int(os.environ.get("EXPIRY_SHARES", "8")),
    )
