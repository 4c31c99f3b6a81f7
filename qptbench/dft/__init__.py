"""DFT: the level of theory, geometries, AO order and frames, PySCF tensors and labels, the XC
functionals, the aufbau density, the differentiable energy and the DIIS SCF.

Plain functions of arrays and tensors; imports nothing from qptbench beyond the shared helpers
(``qptbench.errors``).  Nothing is imported here eagerly.
"""
