"""Evaluation: ONE evaluator and ONE protocol for every method and every control.

A method hands over predicted Hamiltonians (PySCF AO order, each in its reference geometry's own
frame); ``evaluator.Evaluator`` scores them against PySCF references with the same code, on the
same held-out geometries, at k = 0, 1 and 3 DFT iterations after the network
(``protocol.K_VALUES``).  No method keeps scoring code of its own.
"""
