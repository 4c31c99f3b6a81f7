"""check_run and the `qptbench tables` command on a synthetic run directory: consistent runs
pass, broken ones are caught (fixtures in conftest.py, the run in synthetic_run.py)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from qptbench.cli import app
from qptbench.report import checks, tables


def _measured(frame):
    return tables.split(frame)[0]


# -- check_run ---------------------------------------------------------------------------------

def test_check_run_clean_then_broken(written, tmp_path):
    run_dir = Path(shutil.copytree(written, tmp_path / "run"))
    assert checks.check_run(run_dir) == []

    svg = run_dir / "plots" / "training_curves.svg"
    content = svg.read_bytes()
    svg.unlink()
    assert checks.check_run(run_dir) == ["plots/training_curves.svg is missing or empty"]
    svg.write_bytes(content)

    ledger = run_dir / "ledger.jsonl"
    good = ledger.read_text()
    ledger.write_text(good + json.dumps({"phase": "train", "wall_seconds": 5.0,
                                         "method": "schnorb", "step": 1}) + "\n")
    assert any("schnorb" in p for p in checks.check_run(run_dir, outputs=False))
    ledger.write_text(good + json.dumps({"phase": "nap", "wall_seconds": 5.0,
                                         "method": "qpt"}) + "\n")
    assert any("unknown phase" in p for p in checks.check_run(run_dir, outputs=False))
    ledger.write_text(good + json.dumps({"phase": "eval", "wall_seconds": -1.0,
                                         "method": "qpt"}) + "\n")
    assert any("bad wall_seconds" in p for p in checks.check_run(run_dir, outputs=False))
    ledger.write_text(good + json.dumps({"phase": "eval", "wall_seconds": math.inf,
                                         "method": "qpt", "seed": 0}) + "\n")
    assert any("bad wall_seconds" in p for p in checks.check_run(run_dir, outputs=False))

    # CSVs that no longer match the ledger (written before a resumed segment of seed 1)
    ledger.write_text(good + json.dumps({"phase": "train", "wall_seconds": 360.0,
                                         "method": "qpt", "seed": 1, "step": 40}) + "\n")
    problems = checks.check_run(run_dir)
    assert any("table1_cost.csv" in p and "differs from the ledger" in p for p in problems)
    assert any(p.startswith("results.csv: qpt seed 1 wall_hours differ") for p in problems)
    assert not any("qpt seed 0" in p or "qhnet" in p for p in problems)
    assert checks.check_run(run_dir, outputs=False) == []  # the ledger itself is consistent
    ledger.write_text(good)

    results = pd.read_csv(run_dir / "results.csv")
    keep = results.copy()
    results[~((results["method"] == "qhnet") & (results["seed"] == 1))].to_csv(
        run_dir / "results.csv", index=False)
    assert checks.check_run(run_dir) == ["results.csv: no row for qhnet seed 1"]
    keep.to_csv(run_dir / "results.csv", index=False)

    # every seed's folder is checked, not only the first one's
    (run_dir / "qhnet" / "seed1" / "metrics.jsonl").write_text("")
    assert "qhnet/seed1: no evaluation in metrics.jsonl" in checks.check_run(run_dir,
                                                                            outputs=False)
    (run_dir / "qpt" / "seed1" / "scores.csv").unlink()
    assert "qpt/seed1/scores.csv is missing" in checks.check_run(run_dir, outputs=False)
    shutil.rmtree(run_dir / "qhnet" / "seed1")
    assert "qhnet/seed1/model.json is missing" in checks.check_run(run_dir, outputs=False)
    (run_dir / "run.json").unlink()
    assert checks.check_run(run_dir)[0].startswith("cannot read")


def test_check_run_flags_curves_without_k(run_dir):
    path = run_dir / "qpt" / "seed0" / "metrics.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    old = [{k.removesuffix("_k1"): v for k, v in r.items() if not k.endswith(("_k0", "_k3"))}
           for r in rows]  # the old layout's keys
    path.write_text("".join(json.dumps(r) + "\n" for r in old))
    problems = checks.check_run(run_dir, outputs=False)
    assert len(problems) == 1 and problems[0].startswith("qpt/seed0: final metrics lack")


def test_check_frame_flags_missing_units_and_mixing(built, built_tables):
    run_dir, frame = built, built_tables[True]["table1_cost"]
    assert checks._check_frame("t", frame.rename(columns={tables.TOTAL_H: "total"}),
                               str(run_dir)) == ["t: column 'total' has no unit in parentheses"]
    mixed = pd.concat([frame.iloc[[-1]], frame.iloc[:-1]], ignore_index=True)
    assert "t: paper rows are mixed among measured rows" in checks._check_frame(
        "t", mixed, str(run_dir))
    assert any("not the run directory" in p
               for p in checks._check_frame("t", frame, "/elsewhere"))


# -- the command -------------------------------------------------------------------------------

def test_cli_tables(run_dir, built_tables, tmp_path):
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(app, ["tables", str(run_dir), "--format", "csv", "--out", str(out),
                                 "--plots", "--check"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["plots", *[f"{name}.csv" for name in tables.TABLES]])
    assert len(list((out / "plots" / run_dir.name).iterdir())) == 4
    assert "consistent" in result.output
    written = pd.read_csv(out / "table1_cost.csv")
    measured = written[written["source"] == str(run_dir)]
    assert measured["total (h)"].tolist() == pytest.approx(
        _measured(built_tables[True]["table1_cost"])[tables.TOTAL_H].tolist())
    result = runner.invoke(app, ["tables", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "| label " in result.output and "| zero " in result.output
    assert "Reported in the paper" in result.output
    assert runner.invoke(app, ["tables", str(run_dir), "--format", "html"]).exit_code == 2
    bad = runner.invoke(app, ["tables", str(tmp_path / "nope")])
    assert bad.exit_code == 2 and "does not exist" in bad.output
    shutil.rmtree(run_dir / "qpt" / "seed1")
    broken = runner.invoke(app, ["tables", str(run_dir), "--check"])
    assert broken.exit_code == 1 and "problem:" in broken.output
    assert "qpt/seed1/model.json is missing" in broken.output
