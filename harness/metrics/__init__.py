"""Numbers from raw records: per-request and per-repetition metrics derived from the
events, statistics, validity, cost, equivalence of settings, comparison, and the one table of
metric and tag names with their units and definitions."""
