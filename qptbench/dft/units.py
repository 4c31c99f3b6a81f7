"""Unit conversions from Hartree (atomic units inside, meV and µHa in reports)."""

HARTREE_TO_EV = 27.211386245988  # CODATA 2018 (the QPT code used 27.2114079527: 1e-6 relative)
HARTREE_TO_MEV = 1000.0 * HARTREE_TO_EV
HARTREE_TO_UHA = 1.0e6
