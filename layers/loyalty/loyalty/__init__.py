"""Serverless Loyalty: the domain core (no AWS here) and its adapters (loyalty.adapters)."""
