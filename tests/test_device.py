"""The same numbers on CUDA as on the CPU (skipped where torch sees no GPU)."""

from __future__ import annotations

import pytest
import torch
from conftest import cached_tensors

from qptbench.dft.energy import energy, fock, scf_step
from qptbench.dft.scf import run_scf
from qptbench.runtime import resolve_device

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")


@pytest.mark.gpu
@needs_cuda
def test_energy_gradient_and_scf_on_cuda_match_cpu():
    _, t = cached_tensors("water")
    tc = t.to("cuda")
    h = fock(t, t.dm_minao).requires_grad_(True)
    hc = h.detach().cuda().requires_grad_(True)
    e, ec = energy(t, h, (0.5, 0.0)), energy(tc, hc, (0.5, 0.0))
    e.backward()
    ec.backward()
    assert abs(float(e) - float(ec)) < 1e-10
    assert torch.allclose(h.grad, hc.grad.cpu(), atol=1e-9)
    assert abs(run_scf(t).energy - run_scf(tc).energy) < 1e-9


def test_scf_step_mixes_with_the_previous_density():
    _, t = cached_tensors("water")
    h = fock(t, t.dm_minao)
    pure, _ = scf_step(t, h)
    mixed, f_mixed = scf_step(t, h, dm=t.dm_minao, mix=0.25)
    assert torch.allclose(mixed, 0.75 * pure + 0.25 * t.dm_minao, atol=1e-14)
    assert torch.allclose(f_mixed, fock(t, mixed), atol=1e-12)


def test_device_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
