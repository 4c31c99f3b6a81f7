"""A plain Pulay-DIIS Kohn–Sham SCF built on the torch energy (CPU or GPU)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from qptbench.dft.density import aufbau_density, orbitals
from qptbench.dft.energy import energy_and_fock
from qptbench.dft.tensors import DFTTensors


@dataclass
class SCFResult:
    energy: float                # Ha
    converged: bool
    iterations: int              # Fock builds after the initial guess
    density: torch.Tensor        # (N, N)
    fock: torch.Tensor           # F(density) (N, N)
    mo_energy: torch.Tensor      # (N,) Ha, ascending
    energies: list[float]        # per iteration, Ha
    seconds: float               # wall time


class DIIS:
    """Pulay's direct inversion in the iterative subspace on (Fock, commutator) pairs."""

    def __init__(self, space: int = 8) -> None:
        self.space = space
        self.focks: list[torch.Tensor] = []
        self.errors: list[torch.Tensor] = []

    def extrapolate(self, fock: torch.Tensor, error: torch.Tensor) -> torch.Tensor:
        self.focks = [*self.focks, fock][-self.space:]
        self.errors = [*self.errors, error][-self.space:]
        m = len(self.focks)
        if m == 1:
            return fock
        errs = torch.stack([e.reshape(-1) for e in self.errors])     # (m, N²)
        b = torch.zeros(m + 1, m + 1, dtype=fock.dtype, device=fock.device)
        b[:m, :m] = errs @ errs.mT
        b[:m, m] = b[m, :m] = -1.0
        rhs = torch.zeros(m + 1, dtype=fock.dtype, device=fock.device)
        rhs[m] = -1.0
        # lstsq rather than solve: near convergence the error vectors become linearly dependent
        coeff = torch.linalg.lstsq(b.cpu(), rhs.cpu().unsqueeze(-1)).solution[:m, 0]
        return torch.einsum("m,mij->ij", coeff.to(fock.device), torch.stack(self.focks))


def orbital_gradient(t: DFTTensors, fock: torch.Tensor, dm: torch.Tensor) -> torch.Tensor:
    """F D S − S D F in the orthonormal basis (N, N): zero exactly at self-consistency."""
    fds = fock @ dm @ t.overlap
    return t.l_inv @ (fds - fds.mT) @ t.l_inv.mT


def run_scf(
    t: DFTTensors,
    dm0: torch.Tensor | None = None,
    conv_tol: float = 1e-10,
    conv_tol_grad: float = 1e-6,
    max_cycle: int = 100,
    diis_space: int = 8,
    callback: Callable[[int, float, float], None] | None = None,
) -> SCFResult:
    """Converge the Kohn–Sham equations from ``dm0`` (default: PySCF's minao guess).

    Converged when the energy changes by less than ``conv_tol`` (Ha) and the orbital gradient's
    max-abs is below ``conv_tol_grad``.  ``callback(iteration, energy, gradient)`` sees every step.
    """
    tic = time.perf_counter()
    with torch.no_grad():
        dm = t.dm_minao if dm0 is None else dm0
        energy, fock = energy_and_fock(t, dm)
        diis = DIIS(diis_space)
        energies = [float(energy)]
        converged = False
        iterations = 0
        error = orbital_gradient(t, fock, dm)
        for iterations in range(1, max_cycle + 1):
            dm = aufbau_density(diis.extrapolate(fock, error), t.l_inv, t.n_occ)
            new_energy, fock = energy_and_fock(t, dm)
            delta = float(new_energy - energy)
            energy = new_energy
            energies.append(float(energy))
            error = orbital_gradient(t, fock, dm)
            grad = float(error.abs().max())
            if callback is not None:
                callback(iterations, float(energy), grad)
            if abs(delta) < conv_tol and grad < conv_tol_grad:
                converged = True
                break
        mo_energy, _ = orbitals(fock, t.l_inv)
    if t.device.type == "cuda":
        torch.cuda.synchronize(t.device)
    return SCFResult(
        energy=float(energy),
        converged=converged,
        iterations=iterations,
        density=dm,
        fock=fock,
        mo_energy=mo_energy,
        energies=energies,
        seconds=time.perf_counter() - tic,
    )
