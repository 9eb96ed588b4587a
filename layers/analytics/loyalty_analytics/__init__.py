"""Numeric analytics for the refresh jobs only (its own layer, so API functions stay small)."""
