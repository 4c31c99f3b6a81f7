"""The torch bridge: the jitted JAX energy as a ``torch.autograd.Function``, so a torch model
(QPT's network) can train on the JAX engine with nothing else changed.

Forward hands H to JAX (numpy on CPU, where the conversion is one copy; DLPack on GPU, no copy)
and, when H needs a gradient, runs ``jax_engine.energy_and_grad``: one jitted call gives E and
dE/dH (JAX's reverse mode, a vector–Jacobian product with cotangent 1), and backward only
scales the saved gradient.  Computing dE/dH in the forward costs nothing extra in training,
where every forward is followed by a backward; under ``torch.no_grad`` only the energy runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import torch

from qptbench.dft import jax_engine
from qptbench.dft.jax_tensors import JaxTensors
from qptbench.errors import InputError


def _to_jax(x: torch.Tensor) -> jax.Array:
    x = x.detach()
    if x.is_cuda:
        return jnp.from_dlpack(x.contiguous())
    return jnp.asarray(x.numpy(), dtype=jnp.float64)


def _to_torch(a: jax.Array, like: torch.Tensor) -> torch.Tensor:
    if like.is_cuda:
        return torch.from_dlpack(a).to(like.dtype)
    return torch.from_numpy(np.array(a)).to(like.dtype)  # np.array: a writable copy


class _JaxEnergy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, t: JaxTensors, mixes: tuple[float, ...]):
        h_jax = _to_jax(h)
        if ctx.needs_input_grad[0]:
            e, grad = jax_engine.energy_and_grad(t, h_jax, mixes)
            ctx.save_for_backward(_to_torch(grad, h))
        else:
            e = jax_engine.energy(t, h_jax, mixes)
        return torch.tensor(float(e), dtype=h.dtype, device=h.device)

    @staticmethod
    def backward(ctx, grad_energy):
        (grad,) = ctx.saved_tensors
        return grad_energy * grad, None, None


def energy(t: JaxTensors, h: torch.Tensor, mixes: Sequence[float] = ()) -> torch.Tensor:
    """E(X; H), Ha, as a 0-d torch tensor on H's device, differentiable with respect to H:
    the torch engine's ``energy(t, h, mixes)`` computed by the JAX engine (``t`` from
    ``jax_tensors.from_torch``)."""
    if h.dtype != torch.float64:
        raise InputError(f"H must be float64 (all DFT in qptbench is), got {h.dtype}")
    return _JaxEnergy.apply(h, t, tuple(float(m) for m in mixes))
