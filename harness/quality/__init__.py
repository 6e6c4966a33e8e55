"""The quality gate: the shipped eval suites and their scorers, the eval run on a loaded
model (worker side), reference logits and fidelity (KL divergence), and the paired per-slice
scorecard against a baseline (parent side)."""
