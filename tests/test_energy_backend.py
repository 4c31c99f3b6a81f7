"""``--energy-backend torch|jax``: QPT trained on the JAX engine takes the same steps as on
torch's, the JAX SCF lands on torch's energy, and bad choices stop in one line."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from qptbench.cli.main import app
from qptbench.errors import InputError

pytest.importorskip("jax")


def _train(tmp_path, backend: str, monkeypatch) -> tuple[list[float], dict]:
    """20 steps of tiny QPT on water (STO-3G, grid level 1, in-process preparation); the loss
    of every step, as the loop received it, and the run's config.json."""
    from qptbench.methods.qpt import run as qpt_run
    from qptbench.training import qpt as tq
    from qptbench.training.signals import SignalLoss

    cfg = tq.make_config("tiny", molecule="water", basis="sto-3g", grid_level=1, steps=20,
                         workers=0, n_val=1, seed=3, eval_every=0, energy_backend=backend)
    losses: list[float] = []
    original = SignalLoss.__call__

    def spy(self, model, item):  # records, changes nothing
        loss, logs = original(self, model, item)
        losses.append(float(loss.detach()))
        return loss, logs

    monkeypatch.setattr(SignalLoss, "__call__", spy)
    # inference timing (11 more preparations per run) measures speed, which no test asserts
    monkeypatch.setattr("qptbench.methods.qpt.measure_inference", lambda *a, **k: {})
    out = tmp_path / backend
    qpt_run(cfg, out, torch.device("cpu"), progress=False)
    monkeypatch.setattr(SignalLoss, "__call__", original)
    ledger = [json.loads(x) for x in (out / "ledger.jsonl").read_text().splitlines()]
    return losses, {"config": json.loads((out / "config.json").read_text()), "ledger": ledger}


def test_jax_backend_trains_qpt_through_the_same_losses(tmp_path, monkeypatch):
    from qptbench.dft.jax_engine import TRACES

    torch_losses, torch_run = _train(tmp_path, "torch", monkeypatch)
    traces = TRACES["energy_and_grad"]
    jax_losses, jax_run = _train(tmp_path, "jax", monkeypatch)
    assert len(torch_losses) == len(jax_losses) == 20
    # the schedule's switch to the mixed second iteration (at 75%) is inside the 20 steps
    assert max(abs(a - b) for a, b in zip(torch_losses, jax_losses, strict=True)) <= 1e-8
    assert len(set(torch_losses)) > 10  # not a comparison of constants
    # 4 conformations (window 6) share one grid block shape: one compile per schedule phase
    assert TRACES["energy_and_grad"] - traces <= 2
    assert torch_run["config"]["energy_backend"] == "torch"
    assert jax_run["config"]["energy_backend"] == "jax"
    assert {e.get("energy_backend") for e in jax_run["ledger"]} == {"jax"}
    booked = [e for e in jax_run["ledger"] if e.get("what") == "training samples"]
    assert booked and booked[0]["n"] >= 4  # conversion booked with these samples


def test_run_hands_the_backend_to_the_network_methods():
    from dataclasses import asdict
    from types import SimpleNamespace

    from qptbench import harness
    from qptbench.methods import make_method

    cfg = harness.make_config("smoke", methods=("qpt", "qhnet"), energy_backend="jax")
    ctx = SimpleNamespace(settings=asdict(cfg), molecule="water", dataset="d.h5", seed=0)
    assert make_method("qpt")._config(ctx).energy_backend == "jax"
    default = harness.make_config("smoke", methods=("qpt",))
    ctx.settings = asdict(default)
    assert default.energy_backend == "torch"
    assert make_method("qpt")._config(ctx).energy_backend == "torch"


def _scf_json(*options: str) -> dict:
    result = CliRunner().invoke(app, ["scf", "-m", "water", "--basis", "sto-3g",
                                      "--grid-level", "1", "--json", *options])
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


def test_jax_scf_matches_torch_scf():
    ours, theirs = _scf_json("--energy-backend", "jax"), _scf_json()
    assert ours["energy_backend"] == "jax" and theirs["energy_backend"] == "torch"
    assert ours["converged"] and theirs["converged"]
    assert abs(ours["energy_hartree"] - theirs["energy_hartree"]) <= 1e-8
    assert ours["abs_diff_hartree"] < 1e-7  # and both agree with PySCF


def _refused(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    return result.output


@pytest.mark.parametrize("command", ["scf", "train-qpt", "run"])
def test_unknown_backend_is_refused_in_one_line(command, tmp_path):
    extra = ["-m", "water"] + ([] if command == "scf" else ["--out", str(tmp_path / "x")])
    assert "unknown energy backend 'numpy'" in _refused(command, *extra,
                                                        "--energy-backend", "numpy")


def test_jax_df_scf_matches_pyscf_df():
    ours = _scf_json("--eri", "df", "--auxbasis", "def2-svp-jkfit", "--energy-backend", "jax")
    assert ours["energy_backend"] == "jax" and ours["converged"]
    assert ours["abs_diff_hartree"] < 1e-7  # PySCF's DF-RKS with the same auxiliary basis


def test_sc_signal_refuses_jax(tmp_path):
    assert "sc signal" in _refused("train-qpt", "--preset", "smoke", "--signal", "sc",
                                   "--energy-backend", "jax", "--out", str(tmp_path / "a"))
    assert "qpt:sc" in _refused("run", "--methods", "qpt,qpt:sc", "--energy-backend", "jax",
                                "--out", str(tmp_path / "b"))


def test_missing_jax_names_the_install_command(monkeypatch):
    from qptbench.dft import energy_backend

    monkeypatch.setattr(energy_backend, "find_spec", lambda name: None)
    with pytest.raises(InputError, match="pip install jax"):
        energy_backend.check_energy_backend("jax")
    assert energy_backend.check_energy_backend("torch") == "torch"  # torch needs no JAX
