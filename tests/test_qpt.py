"""QPT: tokens, symmetry of A, frame invariance of the predicted energy, gradients, resume."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from qptbench.cli import app
from qptbench.energy import energy as dft_energy
from qptbench.frames import ao_rotation, principal_frame
from qptbench.geometry import Molecule
from qptbench.level import LevelOfTheory
from qptbench.models.qpt import QPT, count_parameters, preset_config
from qptbench.models.qpt_inputs import Vocabulary, prepare_sample
from qptbench.tensors import basis_layout, build_mole

LEVEL = LevelOfTheory(grid_level=1)


@pytest.fixture(scope="module")
def vocab():
    return Vocabulary.from_basis("def2-svp")


def _rotated(molecule: Molecule, seed: int) -> tuple[Molecule, np.ndarray]:
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    rot = q * np.sign(np.diag(r))
    if np.linalg.det(rot) < 0:
        rot[:, 0] *= -1
    shift = rng.normal(scale=3.0, size=3)
    return Molecule.from_arrays(molecule.numbers, molecule.positions @ rot.T + shift), rot


def test_vocabulary_is_derived_from_the_basis(vocab):
    assert vocab.elements == ("H", "C", "N", "O", "F")
    assert vocab.offsets == (0, 5, 19, 33, 47) and vocab.size == 61  # H 5 AOs, C/N/O/F 14
    assert Vocabulary.from_basis("sto-3g").size == 1 + 4 * 5


@pytest.mark.parametrize("name, n_tokens", [("water", 24), ("ethanol", 72),
                                            ("malondialdehyde", 90), ("uracil", 132)])
def test_one_token_per_ao(vocab, name, n_tokens):
    mol = Molecule.builtin(name)
    layout = basis_layout(mol)
    tokens = vocab.tokens(mol.symbols, layout.ao_atom)
    assert tokens.shape == (n_tokens,)
    # Every atom's tokens run through its element's block in AO order.
    for atom, symbol in enumerate(mol.symbols):
        block = tokens[layout.ao_atom == atom]
        start = vocab.offsets[vocab.elements.index(symbol)]
        assert block.tolist() == list(range(start, start + block.size))


def test_unknown_element_is_refused(vocab):
    from qptbench.errors import InputError

    with pytest.raises(InputError, match="not in the model's vocabulary"):
        vocab.tokens(["H", "S"], np.array([0, 1]))


def test_principal_frame_is_proper_and_unique():
    mol = Molecule.builtin("ethanol").displaced(seed=3, scale=0.05)
    canon, rot, centre = principal_frame(mol)
    assert np.linalg.det(rot) == pytest.approx(1.0)
    np.testing.assert_allclose(canon.positions @ rot.T + centre, mol.positions, atol=1e-12)
    moved, _ = _rotated(mol, seed=1)
    np.testing.assert_allclose(principal_frame(moved)[0].positions, canon.positions, atol=1e-10)


def test_ao_rotation_maps_pyscf_matrices_between_frames():
    mol = Molecule.builtin("water").displaced(seed=0, scale=0.05)
    canon, rot, _ = principal_frame(mol)
    u = ao_rotation(basis_layout(mol).shell_ls, rot)
    s_orig = build_mole(mol).intor_symmetric("int1e_ovlp")
    s_canon = build_mole(canon).intor_symmetric("int1e_ovlp")
    np.testing.assert_allclose(u @ s_canon @ u.T, s_orig, atol=1e-12)
    np.testing.assert_allclose(u @ u.T, np.eye(u.shape[0]), atol=1e-12)


def test_output_is_symmetric_and_energy_is_frame_invariant(vocab):
    torch.manual_seed(0)
    model = QPT(preset_config("tiny", vocab.size)).double()
    mol = Molecule.builtin("water").displaced(seed=5, scale=0.05)
    moved, _ = _rotated(mol, seed=2)
    energies = []
    for m in (mol, moved):
        sample = prepare_sample(m, vocab, LEVEL)
        a = model.correction(sample.tokens, sample.positions.double(), sample.biases.double())
        assert torch.equal(a, a.T)
        with torch.no_grad():
            energies.append(float(dft_energy(sample.tensors, model(sample), (0.5, 0.0))))
    assert abs(energies[0] - energies[1]) < 1e-9


def test_gradient_reaches_every_parameter(vocab):
    torch.manual_seed(0)
    model = QPT(preset_config("tiny", vocab.size))
    sample = prepare_sample(Molecule.builtin("water"), vocab, LEVEL)
    dft_energy(sample.tensors, model(sample)).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing, missing


def test_parameter_counts(vocab):
    counts = {p: count_parameters(QPT(preset_config(p, vocab.size))) for p in ("tiny", "small")}
    assert counts["tiny"] < counts["small"] < 10_000_000
    # gpt-medium: 23 biased blocks of 12d² + 13d and the Q = K output head, d = 1024.
    d = 1024
    expected = 23 * (12 * d * d + 13 * d) + (61 + 3 + 6 * 16) * d + d + 2 * d + d * d + d
    assert preset_config("gpt-medium", 61).d_model == d
    assert expected == pytest.approx(290.93e6, rel=1e-3)


def _energies(path):
    rows = [json.loads(x) for x in (path / "train.jsonl").read_text().splitlines()]
    return [r["energy_ha"] for r in rows]


def test_resume_reproduces_the_loss_curve(tmp_path, monkeypatch):
    from qptbench import train_qpt as tq

    cfg = tq.make_config("smoke", steps=16, checkpoint_every=4, n_val=1, window=2)
    cfg = tq.replace(cfg, eval_every=0)
    tq.run(cfg, tmp_path / "straight", torch.device("cpu"), progress=False)

    original = tq.ImplicitDFTLoss.__call__

    def killed_at_step_10(self, model, item):
        if self.step == 10:
            raise KeyboardInterrupt
        return original(self, model, item)

    monkeypatch.setattr(tq.ImplicitDFTLoss, "__call__", killed_at_step_10)
    with pytest.raises(KeyboardInterrupt):
        tq.run(cfg, tmp_path / "resumed", torch.device("cpu"), progress=False)
    monkeypatch.setattr(tq.ImplicitDFTLoss, "__call__", original)
    tq.run(cfg, tmp_path / "resumed", torch.device("cpu"), resume=True, progress=False)
    np.testing.assert_allclose(_energies(tmp_path / "resumed"), _energies(tmp_path / "straight"),
                               rtol=0, atol=1e-10)


def test_cli_train_qpt_smoke(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train-qpt", "--preset", "smoke", "--steps", "6",
                                      "--n-val", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "zero model" in result.output and "ΔE (meV)" in result.output
    for name in ("config.json", "model.json", "checkpoint.pt", "train.jsonl", "metrics.jsonl",
                 "ledger.jsonl", "summary.json", "references.pt"):
        assert (out / name).exists(), name
    phases = {json.loads(x)["phase"] for x in (out / "ledger.jsonl").read_text().splitlines()}
    assert {"reference", "tensors", "train", "eval"} <= phases
    bad = CliRunner().invoke(app, ["train-qpt", "--preset", "nope", "--out", str(out)])
    assert bad.exit_code == 2 and "unknown preset" in bad.output
