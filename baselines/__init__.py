"""Supervised Hamiltonian baselines (installed as ``qptbench.baselines``).

``qhnet``: a QHNet-style SE(3)-equivariant e3nn network trained on PySCF Fock matrices.
"""
