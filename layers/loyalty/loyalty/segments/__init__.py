"""Segmentation's pure core: member features from one item, RFM, points and lifecycle segments, marketer rules, and
predictions for one member (BG/NBD parameters fitted by the refresh, applied in pure Python).

Pure Python and pydantic (this package ships in the API layer). The refresh's vectorised twin of the RFM scoring
lives in loyalty_analytics.rfm. Definitions and policies: docs/segments.md.
"""
