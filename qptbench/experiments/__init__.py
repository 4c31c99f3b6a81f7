"""Experiments built on the comparison harness (``qptbench.harness``): each gives it its own
data and settings and adds its own outputs; the routes, budgets and the one evaluator stay the
harness's.  ``alanine``: the QPT paper's Fig. 4, extrapolation over the (φ, ψ) map.

Stage: after the harness, before the command line (``tests/test_import_layers.py``).
"""
