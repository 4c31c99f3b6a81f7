"""Tables from run directories: numbers traced to the ledger, paper rows kept apart, checks
that fail on broken runs, the `qptbench tables` command."""

from __future__ import annotations

import io
import json
import shutil

import pandas as pd
import pytest
from synthetic_run import STEPS, make_run_dir
from typer.testing import CliRunner

from qptbench import paper_rows, tables
from qptbench.cli import app
from qptbench.report import write_run_outputs
from qptbench.rundir import OUTPUT_FILES, load_run

H = 3600.0


@pytest.fixture
def run_dir(tmp_path):
    return make_run_dir(tmp_path / "run_a")


def _measured(frame):
    return tables.split(frame)[0]


def _row(frame, method):
    rows = frame[frame["method"] == method]
    assert len(rows) == 1, frame
    return rows.iloc[0]


def test_cost_table_books_every_phase(run_dir):
    frame = _measured(tables.cost_table([run_dir]))
    qhnet, qpt = _row(frame, "QHNet"), _row(frame, "QPT")
    assert qhnet[tables.DATA_H] == pytest.approx(1.0)
    assert qhnet[tables.TRAIN_H] == pytest.approx(1800 / H)
    assert qhnet[tables.TOTAL_H] == pytest.approx((3600 + 1800) / H)
    assert qhnet[tables.EVAL_H] == pytest.approx(18 / H)
    assert qhnet[tables.CPU_H] == pytest.approx((7000 + 3 * 1100) / H)
    # QPT: no labels; validation-sample tensors are evaluation cost, not preparation
    assert qpt[tables.DATA_H] == 0.0
    assert qpt[tables.TENSORS_H] == pytest.approx(180 / H)
    assert qpt[tables.TOTAL_H] == pytest.approx((180 + 1080) / H)
    assert qpt[tables.EVAL_H] == pytest.approx((9 + 9) / H)
    for row in (qhnet, qpt):  # shared costs are shown on every row, in no total
        assert row[tables.REF_H] == pytest.approx(72 / H)
        assert row[tables.SAMPLE_H] == pytest.approx(36 / H)
        assert row["steps (count)"] == STEPS[-1]
        assert row["source"] == str(run_dir)


def test_hours_at_step_counts_own_costs_only(run_dir):
    run = load_run(run_dir)
    assert run.hours_at_step("qhnet") == pytest.approx(
        {s: (3600 + 600 * (i + 1)) / H for i, s in enumerate(STEPS)})
    assert run.hours_at_step("qpt") == pytest.approx(
        {s: (180 + 360 * (i + 1)) / H for i, s in enumerate(STEPS)})


def test_accuracy_table_final_metrics_and_zero_model(run_dir):
    frame = _measured(tables.accuracy_table([run_dir]))
    assert list(frame["method"]) == ["QPT", tables.ZERO_MODEL, "QHNet"]
    qpt, zero, qhnet = (_row(frame, m) for m in ("QPT", tables.ZERO_MODEL, "QHNet"))
    last = json.loads((run_dir / "qpt" / "metrics.jsonl").read_text().splitlines()[-1])
    assert qpt["ΔE (meV)"] == pytest.approx(last["delta_e_mev"])
    assert qpt["Δε occupied (µHa)"] == pytest.approx(last["delta_eps_occ_uha"])
    assert qpt["ψ occupied (cos)"] == pytest.approx(last["psi_cos_occ"])
    assert zero["ΔH (µHa)"] == pytest.approx(last["zero_delta_h_uha"])
    assert zero["parameters (count)"] == 0
    assert qpt["parameters (count)"] == 1234 and qhnet["parameters (count)"] == 567
    assert qpt["steps (count)"] == STEPS[-1]
    assert qhnet["validation molecules (count)"] == 4
    assert qpt["level of theory"] == "b3lyp5/def2-svp, grid 3"
    assert "2 cores" in qpt["hardware"] and "cpu" in qpt["hardware"]


def test_inference_table(run_dir):
    row = _measured(tables.inference_table([run_dir])).iloc[0]
    assert row["PySCF SCF (s/molecule)"] == pytest.approx(0.5)
    assert row["QPT network + DFT iterations (s/molecule)"] == pytest.approx(0.04)
    assert row["QPT incl. tensor preparation (s/molecule)"] == pytest.approx(0.24)
    assert row["QHNet network (s/molecule)"] == pytest.approx(0.02)
    assert row["molecules timed (count)"] == 4


@pytest.mark.parametrize("name", list(tables.TABLES))
def test_paper_rows_apart_and_units(run_dir, name):
    frame = tables.TABLES[name]([run_dir])
    sources = list(frame["source"])
    n_measured = sum(s != paper_rows.REPORTED for s in sources)
    assert n_measured >= 1
    assert all(s == str(run_dir) for s in sources[:n_measured])
    assert all(s == paper_rows.REPORTED for s in sources[n_measured:])
    assert len(sources) > n_measured  # the paper reports water in every table
    assert set(frame["molecule"]) == {"water"}  # only the paper rows of the measured molecule
    assert tables._check_frame(name, frame, str(run_dir)) == []


def test_paper_values_spot_checks():
    t2 = {(r["molecule"], r["method"]): r for r in paper_rows.TABLE2}
    assert t2["uracil", "QPT"]["delta_e_mev"] == 0.524
    assert t2["water", "QHNet"]["delta_eps_reported_uha"] == 31.62
    t1 = {(r["molecule"], r["method"]): r for r in paper_rows.TABLE1}
    assert t1["uracil", "SchNOrb"]["total_h"] == 786 and t1["water", "QPT"]["total_h"] == 16.3
    t3 = {r["molecule"]: r for r in paper_rows.TABLE3}
    assert t3["uracil"]["qpt_with_tensors_s"] == 1.729 and t3["ethanol"]["pyscf_scf_s"] == 3.9
    assert {r["molecule"] for r in paper_rows.TABLE2} == set(paper_rows.MOLECULES)


def test_several_runs_one_table(tmp_path):
    a = make_run_dir(tmp_path / "a")
    b = make_run_dir(tmp_path / "b", methods=("qpt",), molecule="ethanol")
    frame = tables.cost_table([a, b])
    measured = _measured(frame)
    assert list(zip(measured["source"], measured["method"], strict=True)) == [
        (str(a), "QPT"), (str(a), "QHNet"), (str(b), "QPT")]
    assert set(frame["molecule"]) == {"water", "ethanol"}
    inference = _measured(tables.inference_table([a, b]))
    assert inference["QHNet network (s/molecule)"].isna().tolist() == [False, True]


def test_render_keeps_blocks_apart(run_dir):
    frame = tables.accuracy_table([run_dir])
    md = tables.render(frame, "markdown", "T2")
    measured_part, paper_part = md.split("Reported in the paper")
    assert "reported (paper)" not in measured_part and str(run_dir) in measured_part
    assert "reported (paper)" in paper_part and str(run_dir) not in paper_part
    assert "Δε as reported (µHa)" in paper_part and "Δε occupied (µHa)" in measured_part
    assert "\\toprule" in tables.render(frame, "latex")
    csv = tables.render(frame, "csv")
    back = pd.read_csv(io.StringIO(csv))
    assert list(back.columns) == list(frame.columns) and len(back) == len(frame)
    with pytest.raises(ValueError, match="unknown format"):
        tables.render(frame, "html")


def test_only_qpt_run(tmp_path):
    run_dir = make_run_dir(tmp_path / "qpt_only", methods=("qpt",))
    written, text = write_run_outputs(run_dir)
    assert {p.relative_to(run_dir).as_posix() for p in written} == set(OUTPUT_FILES)
    assert "QPT zero model" in text
    assert tables.check_run(run_dir) == []


def test_check_run_clean_then_broken(run_dir):
    assert any("missing" in p for p in tables.check_run(run_dir))  # outputs not written yet
    write_run_outputs(run_dir)
    assert tables.check_run(run_dir) == []

    svg = run_dir / "plots" / "training_curves.svg"
    content = svg.read_bytes()
    svg.unlink()
    assert tables.check_run(run_dir) == ["plots/training_curves.svg is missing or empty"]
    svg.write_bytes(content)

    ledger = run_dir / "ledger.jsonl"
    good = ledger.read_text()
    ledger.write_text(good + json.dumps({"phase": "train", "wall_seconds": 5.0,
                                         "method": "schnorb", "step": 1}) + "\n")
    assert any("schnorb" in p for p in tables.check_run(run_dir, outputs=False))
    ledger.write_text(good + json.dumps({"phase": "nap", "wall_seconds": 5.0,
                                         "method": "qpt"}) + "\n")
    assert any("unknown phase" in p for p in tables.check_run(run_dir, outputs=False))
    ledger.write_text(good + json.dumps({"phase": "eval", "wall_seconds": -1.0,
                                         "method": "qpt"}) + "\n")
    assert any("bad wall_seconds" in p for p in tables.check_run(run_dir, outputs=False))

    # a CSV that no longer matches the ledger (e.g. tables written before a resumed segment)
    ledger.write_text(good + json.dumps({"phase": "train", "wall_seconds": 360.0,
                                         "method": "qpt", "step": 40}) + "\n")
    assert any("differs from the ledger" in p for p in tables.check_run(run_dir))
    ledger.write_text(good)

    (run_dir / "qhnet" / "metrics.jsonl").write_text("")
    assert "qhnet: no evaluation in metrics.jsonl" in tables.check_run(run_dir, outputs=False)
    shutil.rmtree(run_dir / "qhnet")
    assert "qhnet/model.json is missing" in tables.check_run(run_dir, outputs=False)
    (run_dir / "run.json").unlink()
    assert tables.check_run(run_dir)[0].startswith("cannot read")


def test_check_frame_flags_missing_units_and_mixing(run_dir):
    frame = tables.cost_table([run_dir])
    assert tables._check_frame("t", frame.rename(columns={tables.TOTAL_H: "total"}),
                               str(run_dir)) == ["t: column 'total' has no unit in parentheses"]
    mixed = pd.concat([frame.iloc[[-1]], frame.iloc[:-1]], ignore_index=True)
    assert "t: paper rows are mixed among measured rows" in tables._check_frame(
        "t", mixed, str(run_dir))
    assert any("not the run directory" in p
               for p in tables._check_frame("t", frame, "/elsewhere"))


def test_cli_tables(run_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(app, ["tables", str(run_dir), "--format", "csv", "--out", str(out),
                                 "--plots", "--check"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "plots", "table1_cost.csv", "table2_accuracy.csv", "table3_inference.csv"]
    assert len(list((out / "plots" / run_dir.name).iterdir())) == 4
    assert "consistent" in result.output
    result = runner.invoke(app, ["tables", str(run_dir)])
    assert result.exit_code == 0 and "| QPT zero model (A = 0)" in result.output
    assert runner.invoke(app, ["tables", str(run_dir), "--format", "html"]).exit_code == 2
    bad = runner.invoke(app, ["tables", str(tmp_path / "nope")])
    assert bad.exit_code == 2 and "does not exist" in bad.output


@pytest.mark.slow  # ~10 s: trains the smoke QPT; `qptbench run`'s CI test covers the same path
def test_real_qpt_method_dir(tmp_path):
    """A QPT method folder written by train_qpt.run (smoke), placed in the run layout: the
    tables read it, the hours come from its real ledger, and check_run finds nothing wrong."""
    import torch

    from qptbench import train_qpt as tq
    from qptbench.ledger import read_ledger

    run_dir = tmp_path / "run"
    cfg = tq.replace(tq.make_config("smoke", steps=6, n_val=1, window=2), eval_every=3)
    tq.run(cfg, run_dir / "qpt", torch.device("cpu"), progress=False)
    entries = read_ledger(run_dir / "qpt" / "ledger.jsonl")
    with open(run_dir / "ledger.jsonl", "w") as f:  # what `qptbench run`'s one ledger holds
        for e in entries:
            f.write(json.dumps({**e, "method": "shared" if e["phase"] == "reference"
                                else "qpt"}) + "\n")
    (run_dir / "run.json").write_text(json.dumps({
        "molecule": "water", "preset": "smoke", "methods": ["qpt"],
        "level_of_theory": cfg.level().as_dict(), "environment": entries[0]}))
    (run_dir / "qpt" / "inference.json").write_text(json.dumps(
        {"network_seconds": 0.01, "dft_seconds": 0.02, "tensor_seconds": 0.1,
         "pyscf_scf_seconds": 0.3, "n": 1}))
    write_run_outputs(run_dir)
    assert tables.check_run(run_dir) == []
    qpt = _row(_measured(tables.cost_table([run_dir])), "QPT")
    train_s = sum(e["wall_seconds"] for e in entries if e["phase"] == "train")
    assert qpt[tables.TRAIN_H] == pytest.approx(train_s / H) and train_s > 0
    assert qpt["steps (count)"] == 6
    acc = _measured(tables.accuracy_table([run_dir]))
    assert list(acc["steps (count)"]) == [6, 0]
    assert acc["ΔE (meV)"].notna().all() and (acc["ψ occupied (cos)"] <= 1 + 1e-12).all()
