"""The command line end to end, in a temporary directory."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from qptbench.cli import app

runner = CliRunner()

JSON_KEYS = {"energy_hartree", "pyscf_energy_hartree", "abs_diff_hartree", "converged",
             "iterations", "n_ao", "seconds", "pyscf_seconds"}


def test_scf_json_water(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["scf", "--molecule", "water", "--grid-level", "1", "--json",
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert JSON_KEYS <= out.keys()
    assert out["n_ao"] == 24 and out["converged"]
    assert out["abs_diff_hartree"] < 1e-7
    assert out["abs_diff_hartree"] == pytest.approx(
        abs(out["energy_hartree"] - out["pyscf_energy_hartree"]))
    assert out["level_of_theory"]["xc"] == "b3lyp5"


def test_scf_table_from_xyz(tmp_path):
    path = tmp_path / "h2.xyz"
    path.write_text("2\nhydrogen\nH 0 0 0\nH 0 0 0.74\n")
    result = runner.invoke(app, ["scf", "--xyz", str(path), "--xc", "pbe", "--grid-level", "1"])
    assert result.exit_code == 0, result.output
    assert "energy (Ha)" in result.stdout and "PySCF" in result.stdout
    assert "|difference|" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--xyz", "missing.xyz"], "not found"),
        (["--molecule", "water", "--charge", "1"], "odd number of electrons"),
        (["--molecule", "benzene"], "unknown built-in molecule"),
        (["--molecule", "water", "--xc", "b3pw"], "unknown functional"),
        (["--molecule", "water", "--basis", "no-such-basis"], "unknown basis set"),
        (["--molecule", "water", "--device", "tpu"], "unknown device"),
        ([], "give exactly one"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["scf", *args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in result.output


def test_element_missing_from_basis(tmp_path):
    path = tmp_path / "kr2.xyz"
    path.write_text("2\n\nKr 0 0 0\nKr 0 0 2.5\n")
    result = runner.invoke(app, ["scf", "--xyz", str(path), "--basis", "6-31g"])
    assert result.exit_code == 2
    assert "basis '6-31g' has no functions for element Kr" in result.stderr


def test_help_explains():
    result = runner.invoke(app, ["scf", "--help"])
    assert result.exit_code == 0
    for word in ("--molecule", "--xyz", "--xc", "VWN-RPA", "--device", "--json"):
        assert word in result.stdout
