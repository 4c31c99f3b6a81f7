"""Training and evaluating the QHNet baseline with the shared loop (``qptbench.training.loop``).

Loss: mean |ΔH| + mean ΔH² over all N² entries (Hartree, MAE + MSE with weight 1 each), as the
released QHNet and PhiSNet code do; the papers describe it as "MAE + RMSE", but RMSE is only
logged.  Nothing here scores the model: validation and test go through the shared evaluator
(``qptbench.evaluation``), the same code and protocol as every other method.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from qptbench.dft.units import HARTREE_TO_UHA
from qptbench.training.signals import hamiltonian_loss

from .qhnet_data import Batch, LabelledSet


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


def solve_readout(model: torch.nn.Module, data: LabelledSet, rcond: float = 1e-12,
                  chunk: int = 128) -> float:
    """Set the expansion's readout to the least-squares fit of ``data``; returns its ΔH in µHa.

    H is linear in the outputs of the four MLPs that give the expansion its per-atom and per-pair
    weights and biases (``weight_diag``, ``weight_pair``, ``bias_diag``, ``bias_pair``), and those
    outputs depend on the atom types only.  So, with every feature fixed, the squared error over
    all N² entries is a linear least-squares problem in one weight vector per type: solved here
    by SVD (``rcond`` drops directions below that fraction of the largest singular value), and
    written back into each MLP's last ``nn.Linear`` as the minimum-norm change that reproduces it.

    Why not leave this to the optimiser: on a handful of nearby conformations the features the
    expansion sees are badly conditioned (singular values spread over 4-5 decades), so Adam and
    L-BFGS approach the minimum of this convex sub-problem very slowly; an SVD does not care.
    The fit is exact only if the features span the labels per degree l (enough channels, every
    CG path present, AO order and symmetrisation right), so the residual stays a real check.
    """
    heads = [model.weight_diag, model.weight_pair, model.bias_diag, model.bias_pair]
    param = next(model.parameters())
    z = torch.tensor(data.numbers, dtype=torch.long, device=param.device)  # a copy: read-only
    pos = torch.as_tensor(data.positions, dtype=param.dtype, device=param.device)
    ref = torch.as_tensor(data.fock, dtype=param.dtype, device=param.device)
    n = ref.shape[-1]
    iu = torch.triu_indices(n, n, device=param.device)
    # upper triangle only (H is symmetric by construction); off-diagonal rows weighted √2 so the
    # objective equals the sum of squares over all N² entries
    scale = torch.where(iu[0] == iu[1], 1.0, math.sqrt(2.0)).to(param.dtype)
    captured: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # heads index -> (input, output)

    def keep(k: int):
        return lambda _module, inp, out: captured.__setitem__(k, (inp[0], out))

    handles = [mlp.register_forward_hook(keep(k)) for k, mlp in enumerate(heads)]
    try:
        with torch.enable_grad():
            pred = model(z, pos)
    finally:
        for handle in handles:
            handle.remove()
    y = (pred[:, iu[0], iu[1]] * scale).reshape(-1)
    residual = (ref[:, iu[0], iu[1]] * scale).reshape(-1) - y.detach()
    # rows with the same MLP input (same element or ordered element pair) share one output
    groups = [torch.unique(captured[k][0].detach(), dim=0, return_inverse=True)
              for k in range(len(heads))]
    outputs = [captured[k][1] for k in range(len(heads))]
    eye = torch.eye(y.numel(), dtype=y.dtype, device=y.device)
    rows = []
    for start in range(0, y.numel(), chunk):
        grads = torch.autograd.grad(y, outputs, grad_outputs=eye[start:start + chunk],
                                    is_grads_batched=True, retain_graph=True)
        rows.append(torch.cat([
            g.new_zeros(g.shape[0], len(types), g.shape[-1]).index_add_(1, inverse, g).flatten(1)
            for g, (types, inverse) in zip(grads, groups, strict=True)], dim=1))
    jac = torch.cat(rows).cpu()
    delta = torch.linalg.lstsq(jac, residual.cpu()[:, None], rcond=rcond,
                               driver="gelsd").solution[:, 0].to(param.device)
    with torch.no_grad():
        start = 0
        for mlp, (types, _) in zip(heads, groups, strict=True):
            last: torch.nn.Linear = mlp[-1]
            size = len(types) * last.out_features
            change = delta[start:start + size].view(len(types), last.out_features)
            start += size
            # find dA, db with dA h_t + db = change_t for every type t (min-norm, exact while the
            # types' hidden activations are linearly independent)
            design = torch.cat([mlp[:-1](types), torch.ones_like(types[:, :1])], dim=1)
            update = change.T @ torch.linalg.pinv(design.T)
            last.weight += update[:, :-1]
            last.bias += update[:, -1]
    return float(np.abs(predict(model, data) - data.fock).mean() * HARTREE_TO_UHA)
