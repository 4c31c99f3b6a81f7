"""Networks that predict Hamiltonians: QPT (``qpt.py``); the supervised baselines live in
``qptbench.baselines``."""
