"""Training and evaluating the QHNet baseline with the shared loop (``qptbench.train``).

Loss: mean |ΔH| + mean ΔH² over all N² entries (Hartree, MAE + MSE with weight 1 each), as the
released QHNet and PhiSNet code do; the papers describe it as "MAE + RMSE", but RMSE is only
logged.  Evaluation uses the shared metrics: ΔH, Δε (all and occupied), ψ, and ΔE, the energy of
the predicted H after one DFT iteration through our E(·) (``qptbench.energy.energy``) against
the PySCF label energy, which the QHNet papers do not report.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from qptbench.ledger import Ledger
from qptbench.level import LevelOfTheory
from qptbench.metrics import HARTREE_TO_UHA, energy_error_mev, hamiltonian_metrics, mean_metrics

from .qhnet_data import Batch, LabelledSet


def hamiltonian_loss(h_pred: torch.Tensor, h_ref: torch.Tensor
                     ) -> tuple[torch.Tensor, dict[str, float]]:
    """MAE + MSE over every entry (Ha and Ha²); logs MAE and RMSE in µHa."""
    diff = h_pred - h_ref
    mae, mse = diff.abs().mean(), diff.square().mean()
    logs = {"mae_uha": float(mae.detach()) * HARTREE_TO_UHA,
            "rmse_uha": float(mse.detach().sqrt()) * HARTREE_TO_UHA}
    return mae + mse, logs


def make_loss_fn(numbers: np.ndarray) -> Callable[[torch.nn.Module, Batch],
                                                 tuple[torch.Tensor, dict[str, float]]]:
    z = torch.tensor(np.asarray(numbers), dtype=torch.long)

    def loss_fn(model: torch.nn.Module, batch: Batch):
        return hamiltonian_loss(model(z, batch.positions), batch.fock)

    return loss_fn


@torch.no_grad()
def predict(model: torch.nn.Module, data: LabelledSet, chunk: int = 16) -> np.ndarray:
    """Predicted H (M, N, N) in Ha, PySCF order, float64."""
    param = next(model.parameters())
    z = torch.tensor(data.numbers, dtype=torch.long)
    out = []
    for start in range(0, len(data), chunk):
        pos = torch.as_tensor(data.positions[start:start + chunk], dtype=param.dtype,
                              device=param.device)
        out.append(model(z, pos).to("cpu", torch.float64).numpy())
    return np.concatenate(out)


class Evaluator:
    """``evaluate(model, step)`` for ``qptbench.train.train``: mean metrics over a labelled set.

    ΔE needs the DFT tensors of each geometry; they are built once, for the first
    ``energy_molecules`` conformations (0 skips ΔE), and their cost goes to the ledger.
    ``delta_e_ref_h_mev`` is the same ΔE for the reference H itself: the floor set by E(·) vs PySCF.
    """

    def __init__(self, data: LabelledSet, level: LevelOfTheory | None = None,
                 energy_molecules: int = 20, ledger: Ledger | None = None,
                 device: torch.device | str = "cpu", prefix: str = ""):
        self.data, self.level = data, level or LevelOfTheory()
        self.ledger, self.device = ledger, device
        self.n_energy = min(int(energy_molecules), len(data))
        self.prefix = prefix
        self._tensors: list | None = None
        self._floor: float | None = None

    def _dft_tensors(self) -> list:
        if self._tensors is None:
            from qptbench.energy import energy
            from qptbench.tensors import build_tensors

            def build():
                self._tensors = [build_tensors(self.data.molecule(k), self.level, self.device)
                                 for k in range(self.n_energy)]
                self._floor = float(np.mean([
                    energy_error_mev(float(energy(t, torch.as_tensor(
                        self.data.fock[k], device=t.overlap.device))), self.data.energy[k])
                    for k, t in enumerate(self._tensors)])) if self.n_energy else float("nan")

            if self.ledger is not None:
                with self.ledger.phase("tensors", molecules=self.n_energy,
                                       what="validation tensors for ΔE"):
                    build()
            else:
                build()
        return self._tensors

    def __call__(self, model: torch.nn.Module, step: int) -> dict[str, float]:
        from qptbench.energy import energy

        h_pred = predict(model, self.data)
        d = self.data
        rows = [hamiltonian_metrics(h_pred[k], d.fock[k], d.overlap[k], d.n_occ)
                for k in range(len(d))]
        out = mean_metrics(rows)
        if self.n_energy:
            tensors = self._dft_tensors()
            errors = [energy_error_mev(float(energy(t, torch.as_tensor(
                h_pred[k], device=t.overlap.device))), d.energy[k])
                for k, t in enumerate(tensors)]
            out["delta_e_mev"] = float(np.mean(errors))
            out["delta_e_ref_h_mev"] = self._floor
        out["n_molecules"] = out["n_val"] = len(d)  # n_val: the name the tables read
        out["n_energy_molecules"] = self.n_energy
        return {f"{self.prefix}{k}": v for k, v in out.items()}
