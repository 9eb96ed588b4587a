"""Campaigns and messaging channels (issue 12): audiences, offers, sends exactly once, channel adapters. Empty until
then; it will follow the points and segments contexts (docs/architecture.md)."""
