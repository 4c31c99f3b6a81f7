"""``qptbench run`` end to end on the smoke preset, in a temp dir: ledger, scores of every method
and control through the one evaluator, results.csv, tables, plots, the compact summary, named
progress bars, resume.  One run of all six ``architecture:signal`` methods (~1-2 min on 2 cores,
a few steps each) is shared by every test in this file."""

import csv
import json
import math

import pytest
from typer.testing import CliRunner

from qptbench.cli import app
from qptbench.ledger import read_ledger
from qptbench.report.checks import check_run
from qptbench.report.rundir import OUTPUT_FILES, SECONDS_PER_HOUR, load_run
from qptbench.report.tables import TENSORS_H, TRAIN_H, cost_table, split

METHODS = ("qpt:energy", "qpt:sc", "qpt:labels", "qhnet:labels", "qhnet:energy", "qhnet:sc")
GIVEN = "qpt,qpt:sc,qpt:labels,qhnet,qhnet:energy,qhnet:sc"  # the old names are aliases
ENERGY_TRAINED = ("qpt:energy", "qhnet:energy")
LABEL_ROUTES = ("qpt:labels", "qhnet:labels")
CONTROLS = ("zero", "scf-diis", "label")
K_VALUES = (0, 1, 3)
SUMMARY_MARK = "[qptbench] writing results.csv, tables and plots"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "water"
    result = CliRunner().invoke(app, ["run", "--molecule", "water", "--preset", "smoke",
                                      "--methods", GIVEN, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output  # stdout and stderr (where tqdm draws its bars) together


def _number(x: str) -> float:
    return float(x) if x != "" else math.nan


def _results(out):
    with open(out / "results.csv", newline="") as f:
        return {(r["method"], int(r["dft_iterations"])): r for r in csv.DictReader(f)}


def test_smoke_run_writes_consistent_evidence(smoke_run):
    out, _ = smoke_run
    assert check_run(out) == []
    for name in OUTPUT_FILES:
        assert (out / name).exists(), name
    run = json.loads((out / "run.json").read_text())
    assert run["level_of_theory"]["xc"] == "b3lyp5" and run["environment"]["torch_version"]
    assert run["methods"] == list(METHODS) and run["seeds"] == [0]
    entries = read_ledger(out / "ledger.jsonl")
    phases = {(e["phase"], e["method"]) for e in entries}
    assert ("sample", "shared") in phases and ("reference", "shared") in phases
    assert all(("train", m) in phases for m in METHODS)
    # one label set, booked once, charged to both label routes
    labels = [e for e in entries if e["phase"] == "label"]
    assert len(labels) == 1 and labels[0]["charged_to"] == list(LABEL_ROUTES)
    assert all(e["wall_seconds"] >= 0 and e["cpu_seconds"] is not None for e in entries)
    # a method's own phases carry its seed; its labels (data creation) carry none
    assert all(e.get("seed") == 0 for e in entries
               if e["phase"] in ("train", "eval") and e["method"] in METHODS)
    assert all("seed" not in e for e in entries if e["phase"] == "label")
    for method in METHODS:
        folder = out / method.replace(":", "-") / "seed0"
        for name in ("metrics.jsonl", "train.jsonl", "model.json", "inference.json",
                     "scores.csv"):
            assert (folder / name).exists(), folder / name
    assert (out / "controls" / "scores.csv").exists()
    grid_files = [f"tables/grid.{s}" for s in ("md", "csv")] + [
        f"plots/grid_error_vs_wallclock.{s}" for s in ("png", "svg")]
    for name in grid_files:
        assert (out / name).exists(), name
    grid = (out / grid_files[0]).read_text()
    assert all(f"| {m.split(':')[0]} " in grid and f" {m.split(':')[1]} " in grid
               for m in METHODS)
    locks = [p for p in out.rglob("*") if ".lock" in p.name]
    assert not locks, locks


def test_qpt_in_loop_preparation_booked_as_tensors(smoke_run):
    """QPT prepares its training samples inside the loop: the ledger holds that time twice (in
    the train entries and in a tensors entry marked included_in="train"); the cost table moves
    it from training to tensor preparation, so the total is the loop's wall-clock."""
    out, _ = smoke_run
    entries = [e for e in read_ledger(out / "ledger.jsonl") if e.get("method") == "qpt:energy"]
    inside = [e["wall_seconds"] for e in entries
              if e["phase"] == "tensors" and e.get("included_in") == "train"]
    assert inside and sum(inside) > 0
    train = sum(e["wall_seconds"] for e in entries if e["phase"] == "train")
    before = sum(e["wall_seconds"] for e in entries if e["phase"] == "tensors"
                 and not e.get("included_in") and "validation" not in e.get("what", ""))
    measured, _ = split(cost_table([out]))
    qpt = measured[measured["method"] == "QPT"].iloc[0]
    assert qpt[TRAIN_H] == pytest.approx((train - sum(inside)) / SECONDS_PER_HOUR)
    assert qpt[TENSORS_H] == pytest.approx((before + sum(inside)) / SECONDS_PER_HOUR)
    run = load_run(out)
    last = run.seed_runs[("qpt:energy", 0)].metrics[-1]
    assert 0 < last["trained_seconds"] <= train + 1e-3
    with open(out / "results.csv", newline="") as f:
        wall = {float(r["wall_hours"]) for r in csv.DictReader(f)
                if r["method"] == "qpt:energy"}
    assert len(wall) == 1
    assert wall.pop() == pytest.approx(run.total_seconds("qpt:energy", seed=0)
                                       / SECONDS_PER_HOUR)


def test_labels_are_charged_to_every_label_route_and_no_other(smoke_run):
    out, _ = smoke_run
    rows = _results(out)
    label_s = sum(e["wall_seconds"] for e in read_ledger(out / "ledger.jsonl")
                  if e["phase"] == "label")
    assert label_s > 0
    for method in METHODS:
        created = _number(rows[method, 1]["data_creation_hours"])
        expected = label_s / SECONDS_PER_HOUR if method in LABEL_ROUTES else 0.0
        assert created == pytest.approx(expected), method


def test_results_rows_for_methods_and_controls(smoke_run):
    out, _ = smoke_run
    rows = _results(out)
    assert set(rows) == {(m, k) for m in (*METHODS, *CONTROLS) for k in K_VALUES}
    for (method, k), r in rows.items():
        assert r["kind"] == ("control" if method in CONTROLS else "method")
        assert r["seed"] == ("" if method in CONTROLS else "0")
        floor = _number(r["floor_mev"])
        assert math.isfinite(floor) and 0 <= floor < 1e-4, (method, k, floor)
        assert int(r["n_molecules"]) == 2 and int(r["n_scf_molecules"]) == 1  # smoke preset
        for col in ("scf_cycles", "scf_cycles_minao", "scf_effective_cycles",
                    "scf_cycle_ratio", "delta_e_mev"):
            assert math.isfinite(_number(r[col])), (method, k, col)
        assert _number(r["scf_effective_cycles"]) == _number(r["scf_cycles"]) + k
        if method in METHODS:
            assert _number(r["wall_hours"]) > 0 and int(float(r["steps"])) > 0
    for k in K_VALUES:  # the label itself scores at the floor
        assert _number(rows["label", k]["delta_e_mev"]) <= 1e-4
        assert _number(rows["label", k]["psi_occ"]) == pytest.approx(1.0)
    assert _number(rows["label", 0]["delta_h_uha"]) == 0.0
    # an energy-trained H is fixed only up to a gauge: its k = 0 ΔH is n/a, never a number;
    # labels and self-consistency fix H itself: scored at k = 0
    for method in METHODS:
        gauge = method in ENERGY_TRAINED
        assert math.isnan(_number(rows[method, 0]["delta_h_uha"])) == gauge, method
        assert math.isnan(_number(rows[method, 0]["delta_eps_occ_uha"])) == gauge, method
        assert math.isfinite(_number(rows[method, 0]["delta_e_mev"]))
        for k in (1, 3):
            assert math.isfinite(_number(rows[method, k]["delta_h_uha"]))
    with open(out / "scores.csv", newline="") as f:
        scores = list(csv.DictReader(f))
    assert {(r["method"], int(r["dft_iterations"])) for r in scores} == set(rows)
    assert all(r["delta_h_uha"] == "" for r in scores
               if r["method"] in ENERGY_TRAINED and r["dft_iterations"] == "0")


def test_curves_come_from_the_evaluator(smoke_run):
    out, _ = smoke_run
    run = load_run(out)
    for method in METHODS:
        last = run.seed_runs[(method, 0)].metrics[-1]
        for k in K_VALUES:
            assert math.isfinite(last[f"delta_e_mev_k{k}"])
        assert math.isfinite(last["delta_h_uha_k1"]) and 0 < last["psi_occ_k1"] <= 1 + 1e-9
        assert last["floor_mev"] < 1e-4 and last["n_val"] == 2
        assert math.isnan(last["delta_h_uha_k0"]) == (method in ENERGY_TRAINED)


def test_progress_bars_are_named(smoke_run):
    _, text = smoke_run
    for name in ("QPT training (energy, psd head, seed 0)", "QPT training (sc, seed 0)",
                 "QHNet on H_init training (energy, seed 0)", "QHNet training (seed 0)",
                 "labels: training", "labels: validation"):
        assert name in text, name


def test_summary_fits_in_100_columns(smoke_run):
    out, text = smoke_run
    assert SUMMARY_MARK in text
    summary = text.split(SUMMARY_MARK, 1)[1].strip("\n").splitlines()
    assert len(summary) >= 6
    too_wide = [line for line in summary if len(line) > 100]
    assert not too_wide, too_wide
    body = "\n".join(summary)
    for name in (*METHODS, *[f"{c} (control)" for c in CONTROLS]):
        assert any(line.startswith(name + " ") for line in summary), name
    assert str(out / "results.csv")[:60] in body


def test_resume_keeps_finished_work(smoke_run):
    out, _ = smoke_run
    before = read_ledger(out / "ledger.jsonl")
    scores = (out / "scores.csv").read_text()
    result = CliRunner().invoke(app, ["run", "--molecule", "water", "--preset", "smoke",
                                      "--methods", GIVEN, "--out", str(out), "--resume"])
    assert result.exit_code == 0, result.output
    after = read_ledger(out / "ledger.jsonl")
    assert after[: len(before)] == before
    new_phases = {e["phase"] for e in after[len(before):]}
    # nothing sampled, labelled, trained or scored twice
    assert not new_phases & {"sample", "label", "train", "eval"}, new_phases
    assert (out / "scores.csv").read_text() == scores
    assert check_run(out) == []
    assert not [p for p in out.rglob("*") if ".lock" in p.name]


def test_bad_input_is_refused(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(app, ["run", "--methods", "qpt,magic", "--out", str(tmp_path / "a")])
    assert bad.exit_code == 2 and "unknown method" in bad.output
    bad = runner.invoke(app, ["run", "--preset", "huge", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "unknown preset" in bad.output
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x").write_text("x")
    bad = runner.invoke(app, ["run", "--out", str(tmp_path / "c")])
    assert bad.exit_code == 2 and "not empty" in bad.output
