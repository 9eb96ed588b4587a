"""Benchmarks: `make bench`. Figures are ratios and counts against baselines run in the same process."""
