"""The AO-order table against real PySCF matrices and e3nn's Wigner D."""

import numpy as np
import pytest
import torch
from e3nn import o3

from qptbench.dft import ao_order
from qptbench.dft.geometry import Molecule
from qptbench.dft.tensors import basis_layout, build_mole
from qptbench.errors import InputError


def _overlap(molecule: Molecule) -> np.ndarray:
    return build_mole(molecule).intor_symmetric("int1e_ovlp")


def test_layout_sizes_follow_the_basis():
    for name, n_ao in [("water", 24), ("ethanol", 72), ("malondialdehyde", 90), ("uracil", 132)]:
        layout = basis_layout(Molecule.builtin(name))
        assert layout.n_ao == n_ao
        assert layout.ao_atom.shape == (n_ao,)


def test_single_shell_maps():
    # ORCA lists p as (z, x, y) and d as m = 0, +1, -1, +2, -2; e3nn's p is (y, z, x).
    assert ao_order.from_pyscf_index([1], "orca").tolist() == [2, 0, 1]
    assert ao_order.from_pyscf_index([2], "orca").tolist() == [2, 3, 1, 4, 0]
    assert ao_order.permutation([1], "orca", "pyscf").tolist() == [1, 2, 0]
    assert ao_order.permutation([2], "orca", "pyscf").tolist() == [4, 2, 0, 1, 3]
    assert ao_order.from_pyscf_index([1], "e3nn").tolist() == [1, 2, 0]


@pytest.mark.parametrize("src", ao_order.ORDERS)
@pytest.mark.parametrize("dst", ao_order.ORDERS)
def test_round_trips_on_a_real_overlap(src, dst):
    molecule = Molecule.builtin("ethanol")
    ls = basis_layout(molecule).shell_ls
    s_pyscf = _overlap(molecule)
    s_src = ao_order.reorder(s_pyscf, ls, "pyscf", src)
    s_dst = ao_order.reorder(s_src, ls, src, dst)
    np.testing.assert_array_equal(ao_order.reorder(s_dst, ls, dst, "pyscf"), s_pyscf)


def test_torch_and_numpy_agree():
    ls = basis_layout(Molecule.builtin("water")).shell_ls
    a = np.random.default_rng(0).normal(size=(24, 24))
    t = ao_order.reorder(torch.as_tensor(a), ls, "pyscf", "orca").numpy()
    np.testing.assert_array_equal(t, ao_order.reorder(a, ls, "pyscf", "orca"))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_e3nn_order_rotates_with_wigner_d(seed):
    """S(R x) = D(R) S(x) D(R)ᵀ in e3nn order: the table and e3nn's basis agree to ~1e-12."""
    molecule = Molecule.builtin("ethanol")
    ls = basis_layout(molecule).shell_ls
    torch.manual_seed(seed)
    rotation = o3.rand_matrix(dtype=torch.float64)
    rotated = Molecule.from_arrays(
        molecule.numbers, molecule.positions @ rotation.numpy().T, molecule.charge
    )
    s = ao_order.reorder(_overlap(molecule), ls, "pyscf", "e3nn")
    s_rot = ao_order.reorder(_overlap(rotated), ls, "pyscf", "e3nn")
    d = ao_order.wigner_d_e3nn(ls, rotation)
    np.testing.assert_allclose(d @ s @ d.T, s_rot, atol=1e-12)
    # The witness: PySCF's own (x, y, z) p order does not rotate with e3nn's D.
    s_raw, s_raw_rot = _overlap(molecule), _overlap(rotated)
    assert np.abs(d @ s_raw @ d.T - s_raw_rot).max() > 1e-2


def test_bad_input_is_refused():
    with pytest.raises(InputError, match="unknown AO order"):
        ao_order.permutation([0, 1], "pyscf", "gaussian")
    with pytest.raises(InputError, match="l <= 2"):
        ao_order.permutation([3], "pyscf", "orca")
    with pytest.raises(InputError, match="does not match"):
        ao_order.reorder(np.eye(5), [0, 1], "pyscf", "orca")
