"""Configuration: the typed schemas of every config group, their registration in Hydra,
the one conversion from a composed DictConfig to typed dataclasses, and Hydra error translation.

Imports nothing else of the harness (only ``runners`` for their config schemas)."""
