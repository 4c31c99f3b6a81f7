"""Closed-shell exchange-correlation functionals in PyTorch, matching PySCF/libxc 7.0.0.

Names and mixtures follow PySCF (``pyscf.dft.libxc.parse_xc``); note that PySCF's ``b3lyp`` is
libxc's B3LYP with VWN-RPA, and ``b3lyp5`` the VWN5 variant. Potentials come from autograd,
so they can be kept differentiable for second functional derivatives.  The kernels and libxc's
screening are written once for torch and JAX (``xc_terms``); this module is their torch face,
``jax_xc`` the JAX one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from qptbench.dft.xc_terms import TERMS, exc_sum
from qptbench.errors import InputError


@dataclass(frozen=True)
class Functional:
    name: str  # canonical lower-case name, e.g. "b3lyp"
    hyb: float  # fraction of exact exchange (PySCF hybrid_coeff)
    is_gga: bool  # True if any term needs sigma
    terms: tuple[tuple[str, float], ...]  # (component name, weight)


def _make(name: str, terms: tuple[tuple[str, float], ...], hyb: float = 0.0) -> Functional:
    return Functional(name, hyb, any(TERMS[t].needs_sigma for t, _ in terms), terms)


# B3LYP weights as libxc builds them: LDA_X gets 1 - a0 - ax with a0 = 0.2, ax = 0.72.
_B3_X = (("slater", 0.08), ("b88", 0.72))
_FUNCTIONALS: dict[str, Functional] = {
    f.name: f
    for f in (
        _make("lda", (("slater", 1.0),)),  # PySCF 'lda' is exchange only
        _make("svwn", (("slater", 1.0), ("vwn5", 1.0))),
        _make("blyp", (("b88", 1.0), ("lyp", 1.0))),
        _make("b3lyp", (*_B3_X, ("vwn_rpa", 0.19), ("lyp", 0.81)), hyb=0.2),
        _make("b3lyp5", (*_B3_X, ("vwn5", 0.19), ("lyp", 0.81)), hyb=0.2),
        _make("pbe", (("pbe_x", 1.0), ("pbe_c", 1.0))),
        *(_make(name, ((name, 1.0),)) for name in TERMS),
    )
}


def available_functionals() -> list[str]:
    """Canonical names accepted by get_functional."""
    return sorted(_FUNCTIONALS)


def get_functional(name: str | Functional) -> Functional:
    """The functional of a PySCF-style name (case-insensitive); a Functional passes through."""
    if isinstance(name, Functional):
        return name
    key = str(name).strip().lower()
    if key not in _FUNCTIONALS:
        raise InputError(
            f"unknown functional {name!r}; known: {', '.join(available_functionals())}"
        )
    return _FUNCTIONALS[key]


def _detach(x: Tensor) -> Tensor:
    return x.detach()


def check_terms(func: Functional, has_sigma: bool) -> None:
    """One-line InputError for a component that is unknown or needs a missing sigma."""
    for name, _ in func.terms:
        term = TERMS.get(name)
        if term is None:
            raise InputError(f"unknown functional component {name!r}; known: {', '.join(TERMS)}")
        if term.needs_sigma and not has_sigma:
            raise InputError(f"functional {func.name!r} is a GGA and needs sigma = |grad rho|^2")


def exc_per_particle(func: Functional | str, rho: Tensor, sigma: Tensor | None) -> Tensor:
    """e_xc per particle, shape of rho: E_xc = sum_g w_g rho_g e_g. Twice differentiable."""
    func = get_functional(func)
    check_terms(func, sigma is not None)
    return exc_sum(torch, _detach, func.terms, rho, sigma)


def _grad_input(x: Tensor) -> Tensor:
    # A fresh node, so autograd.grad yields the partial derivative with respect to this input
    # alone even if the caller computed rho and sigma from each other; clone keeps the link to
    # the caller's graph for create_graph=True.
    return x.clone() if x.requires_grad else x.detach().requires_grad_(True)


def eval_xc(
    func: Functional | str,
    rho: Tensor,
    sigma: Tensor | None = None,
    create_graph: bool = False,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """(exc, vrho, vsigma) as libxc's eval_xc for a closed shell, sigma = |grad rho|^2.

    vrho = d(rho e)/drho, vsigma = d(rho e)/dsigma (None for LDA-only functionals). With
    create_graph=True all three stay differentiable through the incoming rho/sigma graph;
    otherwise they are detached.
    """
    func = get_functional(func)
    if func.is_gga and sigma is None:
        raise InputError(f"functional {func.name!r} is a GGA and needs sigma = |grad rho|^2")
    with torch.enable_grad():
        r = _grad_input(rho)
        s = _grad_input(sigma) if func.is_gga else None
        exc = exc_per_particle(func, r, s)
        inputs = [r] if s is None else [r, s]
        grads = torch.autograd.grad(
            (r * exc).sum(), inputs, create_graph=create_graph, allow_unused=True
        )
    # allow_unused: a hand-built Functional may claim is_gga without a sigma-dependent term
    vrho, *rest = (
        torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs, strict=True)
    )
    vsigma = rest[0] if rest else None
    if not create_graph:
        exc = exc.detach()
        vrho = vrho.detach()
        vsigma = None if vsigma is None else vsigma.detach()
    return exc, vrho, vsigma
