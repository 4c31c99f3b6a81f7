"""``qptbench experiment alanine --preset smoke`` end to end in a temp dir: the map (PNG, SVG),
the region table, results.csv with phi_deg/psi_deg/region, the ledger, and that they agree with
each other and with the geometries; then ``--resume`` with another k.  One run (about 4-5 min
on a quiet 2-core CPU, most of it the evaluator rebuilding 16 alanine references' tensors per
pass) is shared by every test in this file."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter

import numpy as np
import pytest
from typer.testing import CliRunner

from qptbench.cli import app
from qptbench.data.regions import REGIONS, classify, grid_points, parse_region
from qptbench.ledger import read_ledger
from qptbench.report.alanine import REGION_TABLE
from qptbench.report.checks import check_run

pytest.importorskip("rdkit")

GRID = 4
METHODS = ("qpt:energy", "qhnet:labels")
CONTROLS = ("zero", "scf-diis", "label")
TABLE = f"tables/{REGION_TABLE}"  # + .md, .tex, .csv


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("alanine") / "run"
    result = CliRunner().invoke(app, ["experiment", "alanine", "--preset", "smoke",
                                      "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


def _results(out):
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_writes_the_map_the_table_and_results(smoke):
    out, text = smoke
    for name in ("alanine_map.png", "alanine_map.svg", f"{TABLE}.md", f"{TABLE}.csv",
                 f"{TABLE}.tex", "results.csv",
                 "scores.csv", "ledger.jsonl", "run.json", "alanine.json", "summary.txt"):
        assert (out / name).exists() and (out / name).stat().st_size > 0, name
    assert (out / "alanine_map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (out / "alanine_map.svg").read_text()[:500]
    assert "map: " in text and "alanine_map.png" in text
    assert check_run(out) == []  # the harness's consistency checks hold for the experiment too


def test_results_rows_cover_the_grid_once_per_method_seed_and_k(smoke):
    out, _ = smoke
    rows = _results(out)
    assert {"phi_deg", "psi_deg", "region", "wall_hours", "kind"} <= set(rows[0])
    per = Counter((r["method"], r["seed"], r["dft_iterations"]) for r in rows)
    expected = {(m, "0", str(k)) for m in METHODS for k in (0, 1, 3)}
    expected |= {(c, "", str(k)) for c in CONTROLS for k in (0, 1, 3)}
    assert set(per) == expected
    assert set(per.values()) == {GRID * GRID}
    points = {(float(r["phi_deg"]), float(r["psi_deg"])) for r in rows}
    assert points == set(grid_points(GRID))
    region = parse_region("0:180")
    for r in rows:  # the stored region is the classification of the stored angles
        assert r["region"] == classify(float(r["phi_deg"]), float(r["psi_deg"]), region)
        assert r["kind"] == ("control" if r["method"] in CONTROLS else "method")
    for m in METHODS:  # a route's cost columns are its ledger's, the same on every point
        assert len({r["wall_hours"] for r in rows if r["method"] == m}) == 1


def test_angles_are_the_geometries_angles(smoke):
    from qptbench.data.dihedral import angle_difference, dihedral_angles
    from qptbench.data.store import Dataset

    out, _ = smoke
    rows = [r for r in _results(out) if r["method"] == "label" and r["dft_iterations"] == "1"]
    with Dataset.open(out / "data" / "dataset.h5") as ds:
        measured = {int(r["dataset_index"]): dihedral_angles(ds.molecule(int(r["dataset_index"])))
                    for r in rows}
        train = [dihedral_angles(ds.molecule(int(i))) for i in ds.split("train")]
    for r in rows:
        got = measured[int(r["dataset_index"])]
        assert abs(angle_difference(got[0], float(r["phi_deg"]))) < 1e-5
        assert abs(angle_difference(got[1], float(r["psi_deg"]))) < 1e-5
    train = np.array(train)  # the baseline's labels come from the training box
    assert set(classify(train[:, 0], train[:, 1], parse_region("0:180"))) == {"train"}


def test_table_counts_add_up_to_the_grid(smoke):
    out, _ = smoke
    with open(out / f"{TABLE}.csv", newline="") as f:
        table = list(csv.DictReader(f))
    counts = Counter()
    for r in table:
        counts[r["method"]] += int(r["map points (count)"])
    assert set(counts.values()) == {GRID * GRID}
    assert {r["region"] for r in table} == set(REGIONS)
    rows = _results(out)
    for r in table:  # each count is the number of results rows in that region
        if r["method"] == "QPT":
            n = sum(1 for x in rows if x["method"] == "qpt:energy" and x["region"] == r["region"]
                    and x["dft_iterations"] == "1")
            assert int(r["map points (count)"]) == n
    markdown = (out / f"{TABLE}.md").read_text()
    assert "ΔE k=1 (meV)" in markdown and "train = φ, ψ in 0:180" in markdown


def test_the_ledger_books_both_routes(smoke):
    out, _ = smoke
    entries = read_ledger(out / "ledger.jsonl")
    phases = {(e["phase"], e["method"]) for e in entries}
    assert {("sample", "shared"), ("reference", "shared"), ("label", "qhnet:labels"),
            ("train", "qpt:energy"), ("train", "qhnet:labels")} <= phases
    sample = next(e for e in entries if e["phase"] == "sample")
    assert sample["sampler"] == "dihedral" and sample["n"] == 4 + GRID * GRID
    # QPT trained on fresh draws from the box, preparing them inside its loop (booked)
    config = json.loads((out / "qpt-energy" / "seed0" / "config.json").read_text())
    assert config["sampler"] == "dihedral" and config["train_region"] == "0:180"
    prepared = [e for e in entries if e["phase"] == "tensors" and e["method"] == "qpt:energy"
                and e.get("what") == "training samples"]
    assert prepared and sum(e["n"] for e in prepared) >= 1
    settings = json.loads((out / "alanine.json").read_text())
    assert settings["grid"] == GRID and settings["k"] == 1 and settings["band_deg"] == 20


def test_resume_with_another_k_trains_nothing_again(smoke):
    out, _ = smoke
    before = read_ledger(out / "ledger.jsonl")
    scores = (out / "scores.csv").read_text()
    result = CliRunner().invoke(app, ["experiment", "alanine", "--preset", "smoke", "--device",
                                      "cpu", "--out", str(out), "--resume", "--k", "3"])
    assert result.exit_code == 0, result.output
    after = read_ledger(out / "ledger.jsonl")
    assert after[: len(before)] == before
    assert not {e["phase"] for e in after[len(before):]} & {"sample", "label", "train", "eval"}
    assert (out / "scores.csv").read_text() == scores
    assert "ΔE k=3 (meV)" in (out / f"{TABLE}.md").read_text()
    assert json.loads((out / "alanine.json").read_text())["k"] == 3
    assert math.isfinite(float(_results(out)[0]["delta_e_mev"]))


def test_publish_keeps_the_points_and_draws_the_map_again(smoke, tmp_path):
    """``qptbench publish`` of an experiment: results.csv copied row for row (rebuilding it
    would need the HDF5 dataset, never published), the map and table drawn from the copy."""
    out, _ = smoke
    dst = tmp_path / "published"
    result = CliRunner().invoke(app, ["publish", str(out), "--out", str(dst)])
    assert result.exit_code == 0, result.output
    assert _results(dst) == _results(out)
    assert not (dst / "data").exists() and not list(dst.rglob("*.h5"))
    assert (dst / f"{TABLE}.md").read_text() == (out / f"{TABLE}.md").read_text()
    assert (dst / "alanine_map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (dst / f"{TABLE}.md").read_text().strip() in (dst / "summary.txt").read_text()
    assert check_run(dst) == []


def test_bad_input_is_one_line(tmp_path):
    runner = CliRunner()
    for args, message in ((["--grid", "1"], "--grid"), (["--train-region", "0-180"], "LOW:HIGH"),
                          (["--k", "2"], "--k"), (["--methods", "magic"], "unknown method"),
                          (["--preset", "huge"], "unknown preset")):
        result = runner.invoke(app, ["experiment", "alanine", *args, "--out",
                                     str(tmp_path / "x")])
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, lines)
    assert not (tmp_path / "x").exists()  # refused before anything was written


@pytest.mark.parametrize("width", [78, 80])
@pytest.mark.parametrize("cmd", [["experiment"], ["experiment", "alanine"]], ids=" ".join)
def test_help_explains_every_option_within_80_columns(cmd, width):
    result = CliRunner().invoke(app, [*cmd, "--help"], terminal_width=width)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= width
    assert "<bool>" not in result.stdout and "BOOLEAN" not in result.stdout
    if cmd[-1] == "alanine":
        text = " ".join(result.stdout.split())
        for option in ("--preset", "--grid", "--train-region", "--methods", "--seeds",
                       "--budget-hours", "--basis", "--xc", "--device", "--out", "--resume",
                       "--k"):
            assert option in text, option
        assert text.count("[default:") >= 12


def test_help_quotes_the_presets():
    """The numbers `experiment alanine --help` quotes for the presets are the presets'."""
    from typer.main import get_command

    from qptbench.experiments.alanine import PRESETS

    group = get_command(app).commands["experiment"]
    params = {p.name: " ".join(p.help.split()) for p in group.commands["alanine"].params}
    for option, key in (("grid", "grid"), ("n_train", "n_train"), ("seeds", "seeds")):
        for preset, values in PRESETS.items():
            assert f"{preset} {values[key]:,}" in params[option], (option, preset)
    assert f"small {PRESETS['small']['budget_hours']:g}" in params["budget_hours"]
    assert f"{PRESETS['small']['grid']} x {PRESETS['small']['grid']} map, " \
           f"{PRESETS['small']['n_train']} labels, {PRESETS['small']['seeds']} seed" \
           in params["preset"]
