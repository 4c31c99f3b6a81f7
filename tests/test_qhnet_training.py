"""QHNet baseline training: loss, data adapter, batches, metrics wiring, exact resume, CLI."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from qptbench.baselines.qhnet import QHNet, preset
from qptbench.baselines.qhnet_data import LabelledSet, batch_factory
from qptbench.baselines.qhnet_orbitals import element_shells
from qptbench.baselines.qhnet_run import RunOptions
from qptbench.baselines.qhnet_train import hamiltonian_loss, predict, solve_readout
from qptbench.dft.geometry import Molecule
from qptbench.dft.labels import pyscf_rks
from qptbench.dft.level import LevelOfTheory
from qptbench.dft.units import HARTREE_TO_UHA
from qptbench.errors import InputError
from qptbench.methods import qhnet as baseline_run

LEVEL = LevelOfTheory(grid_level=1)  # labels only need to be consistent, not converged in grid


@functools.lru_cache(maxsize=1)
def water_labels(n: int = 6):
    molecules = [Molecule.builtin("water").displaced(seed, 0.05) for seed in range(n)]
    return molecules, [pyscf_rks(m, LEVEL, conv_tol=1e-9) for m in molecules]


@dataclass
class _Cost:
    n_labels: int
    n_failed: int
    wall_seconds: float
    cpu_seconds: float


class FakeStore:
    """The label-store API the baseline reads (qptbench.data.store.Dataset), in memory."""

    def __init__(self, splits):
        self.molecules, self.labels = water_labels()
        self.splits, self.level, self.path = splits, LEVEL, "fake.h5"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def split(self, name):
        return np.asarray(self.splits[name])

    def has_label(self, i):
        return True

    def molecule(self, i):
        return self.molecules[i]

    def label(self, i):
        return self.labels[i]

    def label_cost(self):
        return _Cost(len(self.labels), 0, sum(r.seconds for r in self.labels),
                     sum(r.cpu_seconds for r in self.labels))


def test_loss_is_mae_plus_mse():
    ref = torch.zeros(2, 3, 3)
    pred = torch.full((2, 3, 3), 0.5)
    loss, logs = hamiltonian_loss(pred, ref)
    assert loss.item() == pytest.approx(0.5 + 0.25)
    assert logs["mae_uha"] == pytest.approx(5e5) and logs["rmse_uha"] == pytest.approx(5e5)


def test_labelled_set_from_labels_and_refusals():
    molecules, labels = water_labels()
    data = LabelledSet.from_labels(molecules, labels)
    assert data.positions.shape == (6, 3, 3) and data.fock.shape == (6, 24, 24)
    assert data.n_occ == 5
    np.testing.assert_array_equal(data.subset([2]).fock[0], labels[2].fock)
    with pytest.raises(InputError, match="one composition"):
        LabelledSet.from_labels([molecules[0], Molecule.builtin("ethanol")], labels[:2])
    with pytest.raises(InputError, match="as many labels"):
        LabelledSet.from_labels(molecules, labels[:2])


def test_batches_depend_only_on_their_position():
    molecules, labels = water_labels()
    data = LabelledSet.from_labels(molecules, labels)
    make = batch_factory(data, batch_size=4, seed=3, dtype=torch.float64)
    straight = [b.positions for _, b in zip(range(5), make(0), strict=False)]
    resumed = [b.positions for _, b in zip(range(2), make(3), strict=False)]
    assert all(torch.equal(a, b) for a, b in zip(straight[3:], resumed, strict=True))
    assert straight[0].shape == (4, 3, 3)


def _options(tmp_path, name, **kw):
    base = dict(labels="fake.h5", out=str(tmp_path / name), steps=4, dtype="float64",
                energy_molecules=0, eval_every=0, checkpoint_every=2, progress=False)
    return RunOptions(**{**base, **kw})


@pytest.fixture
def fake_store(monkeypatch):
    splits = {"train": [0, 1, 2, 3], "val": [4], "test": [5]}
    monkeypatch.setattr(baseline_run, "open_store", lambda path: FakeStore(splits))


def test_resume_is_exact(tmp_path, fake_store, monkeypatch):
    straight = baseline_run.run(_options(tmp_path, "straight"))
    state = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)

    real_loss = baseline_run.make_loss_fn
    calls = {"n": 0}

    def interrupted(numbers):
        inner = real_loss(numbers)

        def loss_fn(model, batch):
            calls["n"] += 1
            if calls["n"] == 4:  # killed during step 4; the last checkpoint is step 2
                raise KeyboardInterrupt
            return inner(model, batch)

        return loss_fn

    monkeypatch.setattr(baseline_run, "make_loss_fn", interrupted)
    with pytest.raises(KeyboardInterrupt):
        baseline_run.run(_options(tmp_path, "killed"))
    monkeypatch.setattr(baseline_run, "make_loss_fn", real_loss)
    resumed = baseline_run.run(_options(tmp_path, "killed", resume=True))
    again = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    assert again["step"] == state["step"] == 4
    for key, value in state["model"].items():
        assert torch.equal(value, again["model"][key]), key
    assert resumed["val_delta_h_uha_k0"] == straight["val_delta_h_uha_k0"]
    lines = (tmp_path / "killed" / "ledger.jsonl").read_text().splitlines()
    ledger = [json.loads(x) for x in lines]
    assert sum(e["phase"] == "label" for e in ledger) == 1  # labelling cost booked once
    with pytest.raises(InputError, match="different run"):
        baseline_run.run(_options(tmp_path, "killed", resume=True, preset="small"))


def test_run_reports_metrics_energy_and_label_hours(tmp_path, fake_store):
    summary = baseline_run.run(_options(tmp_path, "run", steps=2, energy_molecules=1))
    for key in ("val_delta_h_uha_k0", "val_delta_eps_occ_uha_k1", "val_delta_eps_all_uha_k3",
                "val_psi_occ_k0", "val_delta_e_mev_k1", "test_delta_h_uha_k0",
                "test_delta_e_mev_k3", "label_hours", "train_hours"):
        assert np.isfinite(summary[key]), key
    # E(·) of the reference Fock matrix reproduces the PySCF label energy (the ΔE floor)
    assert summary["val_floor_mev"] < 1e-3
    assert summary["label_hours"] > 0
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["n_train"] == 4 and saved["n_test"] == 1


def test_cli_refuses_bad_input_with_one_line(tmp_path):
    from typer.testing import CliRunner

    from qptbench.cli import app

    runner = CliRunner()
    missing = runner.invoke(app, ["train-baseline", "--labels", str(tmp_path / "none.h5"),
                                  "--out", str(tmp_path / "out"), "--quiet"])
    assert missing.exit_code == 2 and "error:" in missing.output
    bad = runner.invoke(app, ["train-baseline", "--labels", "x.h5", "--dtype", "float16",
                              "--out", str(tmp_path / "out")])
    assert bad.exit_code == 2 and "float16" in bad.output
    assert "MAE + MSE" in runner.invoke(app, ["train-baseline", "--help"]).output


def test_cli_end_to_end_on_a_real_label_store(tmp_path):
    """sample -> label (qptbench.data) -> train-baseline: metrics and the store's label cost."""
    from typer.testing import CliRunner

    from qptbench.cli import app
    from qptbench.data.labelling import label_dataset
    from qptbench.data.store import create_dataset

    molecules, _ = water_labels()
    path = tmp_path / "water.h5"
    splits = {"train": np.arange(4), "val": np.array([4]), "test": np.array([5])}
    create_dataset(path, molecules, name="water", splits=splits, split_seed=0)
    label_dataset(path, LEVEL, progress=False)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train-baseline", "--labels", str(path), "--steps", "2",
                                      "--energy-molecules", "1", "--out", str(out), "--quiet",
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "result.json").read_text())
    assert summary["n_train"] == 4 and summary["n_val"] == 1 and summary["n_test"] == 1
    assert summary["label_hours"] > 0 and np.isfinite(summary["test_delta_e_mev_k1"])


def test_solve_readout_recovers_a_perturbed_readout():
    """Labels made by the model itself, then its readout layers perturbed: the least-squares
    solve must restore the labels exactly (a wrong Jacobian, type grouping or write-back fails)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        molecules = [Molecule.builtin("water").displaced(seed, 0.05) for seed in range(2)]
        torch.manual_seed(0)
        model = QHNet(preset("tiny", node_layers=2, pair_layers=1), element_shells(molecules))
        positions = np.stack([m.positions for m in molecules])
        numbers = np.asarray(molecules[0].numbers)
        with torch.no_grad():
            fock = model(torch.tensor(numbers), torch.as_tensor(positions)).numpy()
        n = fock.shape[-1]
        data = LabelledSet(numbers, 0, positions, fock, np.broadcast_to(np.eye(n), fock.shape),
                           np.zeros(2), 5, np.arange(2))
        with torch.no_grad():
            for mlp in (model.weight_diag, model.weight_pair, model.bias_diag, model.bias_pair):
                for p in mlp[-1].parameters():
                    p.add_(0.1 * torch.randn_like(p))
        before = np.abs(predict(model, data) - fock).mean() * HARTREE_TO_UHA
        after = solve_readout(model, data)
        assert before > 1e3, before  # µHa
        assert after < 1e-3, (before, after)
    finally:
        torch.set_default_dtype(previous)
