"""The three training signals, each usable with any network that maps a prepared molecule to H.

``labels``  mean |H − H*| + mean (H − H*)² over all N² entries (Ha, Ha²), H* PySCF's converged
            Fock matrix: QHNet's supervised loss (``hamiltonian_loss``).
``energy``  E(aufbau(H)) after the DFT-iteration sandwich (QPT's implicit loss, ``dft.energy``):
            one iteration, then a density-mixed second one once ``mix_at`` of training is done.
``sc``      self-consistency (Zhang et al., ICML 2024): the same MAE + MSE as ``labels`` with H*
            replaced by F(D(H)), the Fock matrix of H's own aufbau density.  At the SCF solution
            H = F(D(H)), so the loss is zero there and nowhere else: unlike the energy, it fixes H
            itself, virtual orbitals included, without a label.

Gradients of ``sc``: the loss is differentiated completely, through both H and F(D(H)) (eigh's
degenerate-safe backward in ``dft.density``, J/K, the XC kernel).  Treating F(D(H)) as a constant
target would make each step a damped SCF iteration in parameter space; the full derivative is
the gradient of the quantity we report, and costs one Fock build forward and its backward per
molecule, about what the energy loss's mixed second iteration costs.  Like the paper's argument
for the method, that cost is paid per training step instead of a converged SCF (~10 Fock builds)
per label.

``SignalLoss`` is the loss the shared training loop calls: ``loss(model, prepared) -> (loss,
logs)``; it also totals the preparation cost of each new sample it sees (``book``).

Energy backend (``dft.energy_backend``): with ``jax`` the ``energy`` signal runs the JAX engine
through the torch bridge (``dft.jax_torch``), on each sample's tensors converted once, when the
loss first sees it (kept on the prepared item, ``jax_tensors``); the conversion is booked with
the training samples' tensor preparation.  ``sc`` and ``labels`` refuse ``jax`` for now (the
bridge gives E and dE/dH, not F(D(H)); labels use no energy).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from qptbench.dft.density import aufbau_density
from qptbench.dft.energy import energy as dft_energy
from qptbench.dft.energy import fock
from qptbench.dft.energy_backend import check_energy_backend
from qptbench.dft.tensors import DFTTensors
from qptbench.dft.units import HARTREE_TO_UHA
from qptbench.errors import InputError
from qptbench.ledger import Ledger, cpu_seconds
from qptbench.training.loop import SkipStep

SIGNALS = ("labels", "energy", "sc")
LABEL_FREE = ("energy", "sc")


def hamiltonian_loss(h_pred: torch.Tensor, h_ref: torch.Tensor
                     ) -> tuple[torch.Tensor, dict[str, float]]:
    """MAE + MSE over every entry (Ha and Ha²); logs MAE and RMSE in µHa."""
    diff = h_pred - h_ref
    mae, mse = diff.abs().mean(), diff.square().mean()
    logs = {"mae_uha": float(mae.detach()) * HARTREE_TO_UHA,
            "rmse_uha": float(mse.detach().sqrt()) * HARTREE_TO_UHA}
    return mae + mse, logs


def sc_residual(t: DFTTensors, h: torch.Tensor) -> torch.Tensor:
    """F(D(H)) − H (N, N), Ha: zero exactly at a self-consistent H; differentiable in H."""
    return fock(t, aufbau_density(h, t.l_inv, t.n_occ)) - h


def sc_loss(t: DFTTensors, h: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """The self-consistency loss: ``hamiltonian_loss`` of H against F(D(H)), gradient through
    both (module docstring)."""
    return hamiltonian_loss(h, h + sc_residual(t, h))


def check_backend_signal(energy_backend: str, signal: str) -> None:
    """A known, installed backend that the signal supports (one-line InputError otherwise)."""
    check_energy_backend(energy_backend)
    if energy_backend == "jax" and signal != "energy":
        raise InputError(f"the {signal} signal runs on the torch engine only for now; use "
                         "--energy-backend torch (jax serves the energy signal)")


class SignalLoss:
    """One training signal for the shared loop, on prepared molecules (``training.qpt.Prepared``,
    with ``label`` set for ``labels``).  ``model(sample)`` must return H (N, N), float64, in the
    sample's frame.

    ``set_progress`` receives the fraction of training done (of the steps, or of the wall-clock
    budget when one is set), so a budgeted run reaches the energy's mixed iteration too.  An
    energy this far (``explode_ha``) above the zero model's is skipped, as QPT does.
    """

    def __init__(self, signal: str, device: torch.device, mix_at: float = 0.75,
                 steps: int = 1, explode_ha: float = 1.0, energy_backend: str = "torch"
                 ) -> None:
        if signal not in SIGNALS:
            raise ValueError(f"unknown training signal {signal!r}; choose from "
                             f"{', '.join(SIGNALS)}")
        check_backend_signal(energy_backend, signal)
        self.signal, self.device, self.backend = signal, device, energy_backend
        self.mix_at, self.steps, self.explode_ha = mix_at, steps, explode_ha
        self.step, self.fraction = 0, 0.0
        self.prep_wall = self.prep_cpu = 0.0
        self.prep_n = 0

    def set_step(self, step: int) -> None:
        self.step = step
        self.fraction = max(self.fraction, step / max(self.steps, 1))

    def set_progress(self, fraction: float) -> None:
        self.fraction = max(self.fraction, float(fraction))

    def book(self, ledger: Ledger, workers: int) -> None:
        """Ledger entry for the training samples' tensor preparation.  In-process (workers = 0)
        it ran inside the training loop's wall-clock, so the entry says so and the report moves
        it from training to tensor preparation; in workers it overlapped training, so its wall
        time is not the route's (kept as ``hidden_wall_seconds``) but its CPU time is."""
        if not self.prep_n:
            return
        inside = workers == 0
        ledger.record("tensors", self.prep_wall if inside else 0.0, self.prep_cpu,
                      what="training samples", n=self.prep_n, workers=workers,
                      included_in="train" if inside else "",
                      hidden_wall_seconds=0.0 if inside else self.prep_wall)
        self.prep_wall = self.prep_cpu = 0.0
        self.prep_n = 0

    def _count(self, item: Any) -> None:
        if not item.booked:
            item.booked = True
            self.prep_wall += item.wall_seconds
            self.prep_cpu += item.cpu_seconds
            self.prep_n += 1
            if self.backend == "jax" and self.signal == "energy":
                self._convert(item)

    def _convert(self, item: Any) -> None:
        """The sample's JaxTensors, once per prepared sample (reused for its whole window).
        Here, in the main process, not in DataLoader workers: jax arrays do not cross
        processes, and JAX is not fork-safe."""
        from qptbench.dft.jax_tensors import from_torch

        tic, cpu = time.perf_counter(), cpu_seconds()
        item.jax_tensors = from_torch(item.sample.tensors)
        self.prep_wall += time.perf_counter() - tic
        self.prep_cpu += cpu_seconds() - cpu

    def __call__(self, model: torch.nn.Module, item: Any
                 ) -> tuple[torch.Tensor, dict[str, float]]:
        self._count(item)
        sample = item.sample.to(self.device)
        tic = time.perf_counter()
        h = model(sample)
        tac = time.perf_counter()
        if self.signal == "labels":
            loss, logs = hamiltonian_loss(h, item.label.to(self.device, h.dtype))
        elif self.signal == "sc":
            loss, logs = sc_loss(sample.tensors, h)
        else:
            loss, logs = self._energy(sample, h, item.e_zero_ha,
                                      getattr(item, "jax_tensors", None))
        logs.update(network_ms=1e3 * (tac - tic), signal_ms=1e3 * (time.perf_counter() - tac))
        return loss, logs

    def _energy(self, sample: Any, h: torch.Tensor, e_zero: float, jax_tensors: Any = None
                ) -> tuple[torch.Tensor, dict[str, float]]:
        mixes = (0.5,) if self.fraction >= self.mix_at else ()
        if self.backend == "jax":
            from qptbench.dft import jax_torch

            e = jax_torch.energy(jax_tensors, h, mixes)
        else:
            e = dft_energy(sample.tensors, h, mixes)
        above = float(e.detach()) - e_zero
        if above > self.explode_ha:
            raise SkipStep(f"energy {above:.3g} Ha above the zero model")
        return e, {"energy_ha": float(e.detach()), "above_zero_model_mha": 1e3 * above,
                   "n_iterations": 1 + len(mixes)}
