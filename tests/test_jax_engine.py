"""The JAX engine against the torch engine and PySCF: water and methane, 6-31G, grid level 1."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch
from conftest import random_symmetric

pytest.importorskip("jax")

from qptbench.dft import energy as torch_engine
from qptbench.dft import jax_engine, jax_scf, jax_xc
from qptbench.dft.density import aufbau_density
from qptbench.dft.geometry import Molecule
from qptbench.dft.jax_tensors import from_torch
from qptbench.dft.labels import make_rks, pyscf_rks
from qptbench.dft.level import LevelOfTheory
from qptbench.dft.tensors import build_tensors
from qptbench.dft.xc import eval_xc, get_functional
from qptbench.errors import InputError

BASIS, GRID = "6-31g", 1
FUNCTIONALS = ["b3lyp", "b3lyp5", "pbe", "lda", "svwn", "blyp"]


def _methane(seed: int | None = None) -> Molecule:
    d = 1.087 / 3**0.5  # exact T_d: a triply degenerate HOMO
    pos = [[0, 0, 0], [d, d, d], [-d, -d, d], [-d, d, -d], [d, -d, -d]]
    mol = Molecule.from_arrays(["C", "H", "H", "H", "H"], pos, name="methane")
    return mol if seed is None else mol.displaced(seed, scale=0.05)


@functools.lru_cache(maxsize=4)
def _tensors(name: str, seed: int | None):
    """(molecule, torch tensors at a GGA level, so every functional can be swapped in)."""
    mol = _methane(seed) if name == "methane" else Molecule.builtin(name)
    if name != "methane" and seed is not None:
        mol = mol.displaced(seed, scale=0.05)
    return mol, build_tensors(mol, LevelOfTheory(basis=BASIS, xc="b3lyp5", grid_level=GRID))


def _with_xc(t, xc: str):
    func = get_functional(xc)  # the torch engine wants no AO gradients for an LDA
    return dataclasses.replace(t, xc=func, ao_grad=t.ao_grad if func.is_gga else None)


def _h_init(t) -> torch.Tensor:
    """H = F(D_minao) plus a disturbance, as a network's output would look."""
    with torch.no_grad():
        return torch_engine.fock(t, t.dm_minao) + random_symmetric(t.n_ao, 5, scale=0.01)


def _test_density(t) -> torch.Tensor:
    """Idempotent but unconverged: the aufbau density of a disturbed minao Fock matrix."""
    with torch.no_grad():
        return aufbau_density(_h_init(t), t.l_inv, t.n_occ)


@pytest.mark.parametrize("name, seed", [("water", 11), ("methane", 12)])
def test_energy_and_fock_match_torch_and_pyscf(name, seed):
    mol, t = _tensors(name, seed)
    dm = _test_density(t)
    dm_np = dm.numpy()
    mf = make_rks(mol, LevelOfTheory(basis=BASIS, grid_level=GRID))
    energies = {}
    for xc in FUNCTIONALS:
        tx = _with_xc(t, xc)
        e_j, f_j = jax_engine.energy_and_fock(from_torch(tx), dm_np)
        e_j, f_j = float(e_j), np.asarray(f_j)
        with torch.no_grad():
            e_t, f_t = torch_engine.energy_and_fock(tx, dm)
        mf.xc = xc
        e_ref, f_ref = mf.energy_tot(dm_np), mf.get_fock(dm=dm_np)
        for label, e, f in (("torch", float(e_t), f_t.numpy()), ("pyscf", e_ref, f_ref)):
            assert abs(e_j - e) <= 1e-9, (xc, label, e_j - e)
            assert np.abs(f_j - f).max() <= 1e-8, (xc, label, np.abs(f_j - f).max())
        energies[xc] = e_j
    # guards the comparison: the functionals really differ (B3LYP vs B3LYP5 ~1 eV for water)
    assert abs(energies["b3lyp"] - energies["b3lyp5"]) > 0.01
    assert len({round(e, 4) for e in energies.values()}) == len(FUNCTIONALS)


def _points(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rho = np.concatenate([10.0 ** rng.uniform(-8.0, 3.0, n), [0.0, 1e-20, 3e-15, 2e-12]])
    s = rng.uniform(0.0, 10.0, rho.size)
    s[: n // 10] = 0.0
    sigma = (2.0 * (3.0 * np.pi**2) ** (1.0 / 3.0) * rho ** (4.0 / 3.0) * s) ** 2
    return rho, sigma


@pytest.mark.parametrize("xc", FUNCTIONALS)
def test_xc_potentials_match_torch_pointwise(xc):
    """The shared kernels give the same exc, vrho, vsigma through jax.vjp as through autograd."""
    rho, sigma = _points(500, seed=3)
    r, s = torch.from_numpy(rho), torch.from_numpy(sigma)
    ours = jax_xc.eval_xc(xc, rho, sigma)
    ref = eval_xc(xc, r, s)
    # 1e-12 of Σ_t |w_t v_t|: where components of opposite sign nearly cancel (PBE's vsigma
    # crosses zero), rounding is relative to the parts, not to their sum
    scale = [np.zeros_like(rho) for _ in range(3)]
    for comp, weight in get_functional(xc).terms:
        for k, v in enumerate(eval_xc(comp, r, s)):
            if v is not None:
                scale[k] += np.abs(weight * v.numpy())
    for a, b, size in zip(ours, ref, scale, strict=True):
        if b is None:
            assert a is None
            continue
        a, b = np.asarray(a), b.numpy()
        assert np.isfinite(a).all()
        assert (np.abs(a - b) <= 1e-12 * size + 1e-300).all(), np.abs(a - b).max()
    assert (np.asarray(ours[0])[rho == 0] == 0).all()  # screened points stay exactly 0


def _central_difference(tj, h0, v, mixes, step):
    return (float(jax_engine.energy(tj, h0 + step * v, mixes))
            - float(jax_engine.energy(tj, h0 - step * v, mixes))) / (2 * step)


def _check_gradient(t, h0: torch.Tensor, mixes, seeds=(1, 2)):
    """JAX's dE/dH equals torch's (≤ 1e-8 relative) and a Richardson central difference
    (≤ 1e-6 relative) along the gradient and random symmetric directions."""
    tj = from_torch(t)
    e, grad = jax_engine.energy_and_grad(tj, h0.numpy(), mixes)
    grad = np.asarray(grad)
    assert np.isfinite(grad).all()
    h = h0.clone().requires_grad_(True)
    e_t = torch_engine.energy(t, h, mixes)
    (g_t,) = torch.autograd.grad(e_t, h)
    assert abs(float(e) - float(e_t.detach())) <= 1e-9
    g_t = g_t.numpy()
    assert np.abs(grad - g_t).max() <= 1e-8 * np.abs(g_t).max(), np.abs(grad - g_t).max()
    h0 = h0.numpy()
    directions = [grad] + [random_symmetric(t.n_ao, s).numpy() for s in seeds]
    for v in directions:
        v = v / np.linalg.norm(v)
        step = 2e-4
        coarse = _central_difference(tj, h0, v, mixes, step)
        fine = _central_difference(tj, h0, v, mixes, step / 2)
        fd = (4 * fine - coarse) / 3
        analytic = float((grad * v).sum())
        # 1e-9 absolute: the difference quotient's round-off floor (~1e-12 Ha / step)
        assert abs(analytic - fd) <= 1e-6 * abs(fd) + 1e-9, (analytic, fd)


@pytest.mark.parametrize("xc", ["b3lyp", "b3lyp5", "pbe"])
def test_sandwich_gradient_matches_torch_and_finite_differences(xc):
    _, t = _tensors("water", 21)
    t = _with_xc(t, xc)
    _check_gradient(t, _h_init(t), (0.5,))


def test_degenerate_occupied_orbitals_give_finite_correct_gradients():
    _, t = _tensors("methane", None)
    with torch.no_grad():
        h0 = torch_engine.fock(t, t.dm_minao)  # F(minao): exact T_d
    eps = torch.linalg.eigvalsh(t.l_inv @ h0 @ t.l_inv.T)
    homo = eps[t.n_occ - 3: t.n_occ]
    assert float(homo.max() - homo.min()) < 1e-8  # really degenerate
    _check_gradient(t, h0, ())
    _check_gradient(t, h0, (0.5,), seeds=(4,))


def test_hundred_calls_at_new_h_and_a_second_geometry_do_not_retrace():
    """Steady state: after the first call per function, 100 training-like calls at new H and a
    second geometry of the molecule neither retrace (TRACES) nor compile (the jit caches)."""
    _, t = _tensors("water", 11)
    tj = from_torch(t)
    h1 = _h_init(t).numpy()
    first = [jax_engine.energy(tj, h1, (0.5,)), jax_engine.energy_and_grad(tj, h1, (0.5,))[0],
             jax_engine.sandwich(tj, h1, [0.5])[0]]
    traces = dict(jax_engine.TRACES)
    jits = (jax_engine._energy_jit, jax_engine._energy_and_grad_jit, jax_engine._sandwich_jit)
    compiled = [f._cache_size() for f in jits]
    energies = []
    for k in range(100):
        h = h1 + random_symmetric(t.n_ao, 100 + k, scale=0.01).numpy()
        energies.append(float(jax_engine.energy_and_grad(tj, h, (0.5,))[0]))
    second = [jax_engine.energy(tj, h, (0.5,)), energies[-1], jax_engine.sandwich(tj, h, [0.5])[0]]
    assert dict(jax_engine.TRACES) == traces
    assert [f._cache_size() for f in jits] == compiled
    for a, b in zip(first, second, strict=True):
        assert abs(float(a) - float(b)) > 1e-8  # new H, new numbers: really recomputed
    assert len({round(e, 10) for e in energies}) == 100
    # another geometry of the same molecule, converted anew, has the same shapes
    _, t2 = _tensors("water", 12)
    t2j = from_torch(t2)
    assert t2j.weights.shape == tj.weights.shape  # grids differ, whole blocks do not
    e2 = jax_engine.energy_and_grad(t2j, _h_init(t2).numpy(), (0.5,))[0]
    jax_engine.energy(t2j, _h_init(t2).numpy(), (0.5,))
    assert abs(float(e2) - energies[-1]) > 1e-6
    assert dict(jax_engine.TRACES) == traces
    assert [f._cache_size() for f in jits] == compiled


@pytest.mark.parametrize("name, seed", [("water", 31), ("methane", 32)])
def test_scf_converges_to_pyscf(name, seed):
    mol, t = _tensors(name, seed)
    ours = jax_scf.run_scf(from_torch(t), conv_tol=1e-10)
    ref = pyscf_rks(mol, t.level, conv_tol=1e-10)
    assert ours.converged and ref.converged
    assert abs(ours.energy - ref.energy) <= 1e-7, ours.energy - ref.energy
    occ = slice(0, t.n_occ)
    assert np.abs(ours.mo_energy[occ].numpy() - ref.mo_energy[occ]).max() < 1e-5
    assert len(ours.energies) == ours.iterations + 1


def test_scf_reports_non_convergence():
    _, t = _tensors("water", 31)
    result = jax_scf.run_scf(from_torch(t), max_cycle=1)
    assert not result.converged and result.iterations == 1
    with pytest.raises(InputError, match="max_cycle"):
        jax_scf.run_scf(from_torch(t), max_cycle=0)


def test_bad_tensors_get_one_line_errors():
    _, t = _tensors("water", 11)
    for bad, match in ((dataclasses.replace(t, eri=None), "neither dense ERIs"),
                       (dataclasses.replace(t, ao_grad=None), "GGA")):
        with pytest.raises(InputError, match=match) as info:
            from_torch(bad)
        assert "\n" not in str(info.value)
