"""QHNet for the label-free signals: H = H_init + QHNet(geometry).

A network trained on the energy or on self-consistency has no label to anchor its large, nearly
constant entries (the per-element reference blocks of ``QHNet.fit_reference`` come from labels),
so it gets the start QPT has: the minao Fock matrix H_init = F(D_minao) of the same geometry,
plus a correction.  The correction starts at exactly zero (the last layer of each of the four
MLPs that give the expansion its weights and biases is zeroed: H is linear in their outputs), so
training starts from the zero model, as QPT's small initial output does; gradients still reach
those layers, and through them the rest of the network once they move.

The input is a prepared molecule (``models.qpt_inputs.QPTSample``, canonical frame, its tensors
and H_init); QHNet is equivariant, so predicting there and rotating back (``training.qpt.
Predictor``) equals predicting in the input frame.
"""

from __future__ import annotations

import torch
from torch import nn

from qptbench.models.qpt_inputs import QPTSample

from .qhnet import MD17_RECIPE, QHNet, QHNetConfig, preset
from .qhnet_orbitals import element_shells


def qhnet_preset(name: str, molecule: str | None = None) -> QHNetConfig:
    """QHNet's named preset, with its per-molecule MD17 recipe where there is one."""
    return preset(name, molecule if molecule in MD17_RECIPE else None)


class QHNetOnInit(nn.Module):
    """H (N, N) float64 = sample.h_init + QHNet(numbers, canonical positions)."""

    def __init__(self, net: QHNet) -> None:
        super().__init__()
        self.net = net
        with torch.no_grad():
            for mlp in (net.weight_diag, net.weight_pair, net.bias_diag, net.bias_pair):
                mlp[-1].weight.zero_()
                mlp[-1].bias.zero_()

    def forward(self, sample: QPTSample) -> torch.Tensor:
        param = next(self.net.parameters())
        pos = torch.tensor(sample.molecule.positions, dtype=param.dtype, device=param.device)
        z = torch.tensor([int(n) for n in sample.molecule.numbers], device=param.device)
        return sample.h_init + self.net(z, pos).to(torch.float64)


def build_qhnet_on_init(preset_name: str, molecule: str, basis: str) -> QHNetOnInit:
    """The model for a built-in ``molecule``'s elements in ``basis`` (float32, QHNet's default
    dtype, as the label-trained baseline)."""
    from qptbench.dft.geometry import Molecule

    shells = element_shells([Molecule.builtin(molecule)], basis)
    return QHNetOnInit(QHNet(qhnet_preset(preset_name, molecule), shells)).to(torch.float32)
