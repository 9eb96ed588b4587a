"""Numeric analytics for the refresh jobs only (its own layer, so API functions stay small).

Prediction (docs/prediction.md): `summary` (transactions to frequency/recency/T), `rhythm` (a member's own next
purchase date), `bgnbd` (probability alive, expected purchases), `gamma_gamma` (expected spend per purchase).
Import the modules themselves; this package imports nothing, so `rhythm` stays free of numpy and scipy.
"""
