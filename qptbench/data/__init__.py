"""Conformations and labels: samplers (md, dihedral), readers, splits, the HDF5 store, labelling.

Nothing is imported here eagerly: each submodule pulls in only what it needs (ASE/tblite, RDKit,
h5py, PySCF, Dask), so ``import qptbench.data.splits`` stays cheap.
"""
