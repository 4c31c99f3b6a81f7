"""`qptbench sample`, `label` and `data info` end to end in a temporary directory."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from qptbench.cli import app
from qptbench.data.store import Dataset

runner = CliRunner()


def test_sample_label_info(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["sample", "--molecule", "water", "--n", "4", "--seed", "1",
                                 "--out", "w.h5", "--equilibration", "50", "--interval", "10"])
    assert result.exit_code == 0, result.output
    assert "4 conformations of H2O (md)" in result.stdout
    result = runner.invoke(app, ["label", "w.h5", "--grid-level", "1", "--limit", "2",
                                 "--no-progress", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n_labels"] == 2 and summary["n_remaining"] == 2
    assert summary["mean_seconds_per_label"] > 0
    assert summary["workers"] * summary["threads_per_worker"] <= max(summary["cores"], 2)
    assert [p.name for p in tmp_path.iterdir()] == ["w.h5"]  # no lock file, no empty journal
    result = runner.invoke(app, ["data", "info", "w.h5", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["n_conformations"] == 4 and info["n_labelled"] == 2
    assert info["level_of_theory"]["grid_level"] == 1
    assert info["sampler"]["kind"] == "md" and info["sampler"]["temperature_K"] == 500.0
    assert info["label_cost"]["n_labels"] == 2 and info["label_cost"]["wall_hours"] > 0
    result = runner.invoke(app, ["data", "info", "w.h5"])
    assert "data creation: 2 labels, 0 failed" in result.stdout
    with Dataset.open(tmp_path / "w.h5") as ds:
        assert sorted(ds.labelled()) == sorted(ds.split("train")[:2])  # training set first


def test_sample_dihedral_and_from_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["sample", "--sampler", "dihedral", "--n", "3", "--out",
                                 "ala.h5", "--phi", "-180,180", "--train", "2", "--val", "1"])
    assert result.exit_code == 0, result.output
    with Dataset.open(tmp_path / "ala.h5") as ds:
        assert len(ds) == 3 and ds.numbers.size == 22
        assert ds.sampler["phi_range_deg"] == [-180.0, 180.0]
        assert [len(ds.split(s)) for s in ("train", "val", "test")] == [2, 1, 0]
        xyz = "".join(ds.molecule(i).to_xyz() for i in range(3))
    (tmp_path / "traj.xyz").write_text(xyz)
    result = runner.invoke(app, ["sample", "--from", "traj.xyz", "--out", "copy.h5"])
    assert result.exit_code == 0, result.output
    with Dataset.open(tmp_path / "copy.h5") as ds:
        assert len(ds) == 3 and ds.sampler["kind"] == "file"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["label", "missing.h5"], "dataset file not found"),
        (["data", "info", "missing.h5"], "dataset file not found"),
        (["sample", "--molecule", "water", "--n", "2", "--out", "x.h5", "--sampler", "mc"],
         "unknown sampler"),
        (["sample", "--molecule", "water", "--out", "x.h5"], "--n is required"),
        (["sample", "--molecule", "water", "--n", "2", "--out", "x.h5", "--temperature", "-5"],
         "temperature must be > 0"),
        (["sample", "--molecule", "water", "--n", "4", "--out", "x.h5", "--train", "9"],
         "exceed"),
        (["sample", "--sampler", "dihedral", "--n", "2", "--out", "x.h5", "--phi", "a"],
         "--phi must be two numbers"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1], result.stderr
    assert "Traceback" not in result.output


def test_existing_output_and_not_a_dataset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.h5").write_text("not hdf5")
    result = runner.invoke(app, ["sample", "--molecule", "water", "--n", "1", "--out", "x.h5",
                                 "--equilibration", "0", "--interval", "1"])
    assert result.exit_code == 2 and "exists" in result.stderr
    result = runner.invoke(app, ["data", "info", "x.h5"])
    assert result.exit_code == 2 and "cannot read x.h5 as HDF5" in result.stderr


def test_help_explains():
    sample_words = ("--molecule", "--n", "--seed", "--out", "--train", "Langevin")
    for cmd, words in ((["sample"], sample_words),
                       (["label"], ("--workers", "--scheduler", "--limit", "resumable")),
                       (["data", "info"], ("cost",))):
        result = runner.invoke(app, [*cmd, "--help"])
        assert result.exit_code == 0
        for word in words:
            assert word in result.stdout, (cmd, word)
