"""The command line end to end, in a temporary directory."""

from __future__ import annotations

import json
import re

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


COMMANDS = [["run"], ["tables"], ["sample"], ["label"], ["train-qpt"], ["train-baseline"],
            ["scf"], ["data"], ["data", "info"]]
WIDE = {"COLUMNS": "100"}


def test_run_help_lists_molecules_and_plain_flags():
    from qptbench.dft.geometry import builtin_names

    result = runner.invoke(app, ["run", "--help"], env=WIDE)
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())  # a name may wrap at a line end
    assert builtin_names() == ["water", "ethanol", "malondialdehyde", "uracil",
                               "alanine_dipeptide", "ace_ala4_nme"]
    for name in builtin_names():
        assert name in text, name
    for word in ("--seeds", "--resume / --no-resume", "os.sched_getaffinity", "smoke 6",
                 "small 100", "small 50"):
        assert word in text, word


@pytest.mark.parametrize("width", [78, 80])  # a terminal of >= 80 columns; CliRunner
@pytest.mark.parametrize("cmd", COMMANDS, ids=" ".join)
def test_help_has_no_bool_types_and_fits_80_columns(cmd, width):
    result = runner.invoke(app, [*cmd, "--help"], terminal_width=width)
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.stdout and "BOOLEAN" not in result.stdout
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= width
    broken = [line for line in lines if re.search(r"\w-$", line)]  # "def2-" / "svp" wrapping
    assert not broken, broken


def test_command_summaries_are_short_whole_sentences():
    result = runner.invoke(app, ["--help"], env=WIDE)
    assert result.exit_code == 0
    rows = result.stdout.split("Commands:")[1].strip().splitlines()
    names = [row.split()[0] for row in rows]
    assert names[:4] == ["run", "tables", "sample", "label"]
    assert {"train-qpt", "train-baseline", "scf", "data"} <= set(names)
    for row in rows:
        summary = row.split(maxsplit=1)[1]
        assert len(summary) <= 80 and not summary.endswith("..."), row  # not cut by click
        assert summary.endswith("."), row


def test_boolean_flags_still_parse():
    """--resume, --json, --plots, --check keep working next to their --no- forms."""
    import click
    from typer.main import get_command

    group = get_command(app)
    ctx = click.Context(group)
    for cmd, flags in ((["run"], ["--resume"]), (["train-qpt"], ["--resume"]),
                       (["train-baseline"], ["--resume", "--quiet"]),
                       (["tables"], ["--plots", "--check", "--no-paper"]),
                       (["scf"], ["--json"]), (["label"], ["--json", "--no-progress"]),
                       (["sample"], ["--force"]), (["data", "info"], ["--json"])):
        command = group
        for name in cmd:
            command = command.get_command(ctx, name)
        params = command.make_context(name, [*flags, *(["x"] if cmd in (["label"],
                                      ["data", "info"]) else ["RUN"] if cmd == ["tables"]
                                      else ["--labels", "x"] if cmd == ["train-baseline"]
                                      else ["--out", "x"] if cmd == ["sample"] else [])]).params
        expected = {"--resume": ("resume", True), "--quiet": ("progress", False),
                    "--plots": ("plots", True), "--check": ("check", True),
                    "--no-paper": ("paper", False), "--json": ("as_json", True),
                    "--no-progress": ("progress", False), "--force": ("force", True)}
        for flag in flags:
            key, value = expected[flag]
            assert params[key] is value, (cmd, flag)


def test_run_help_defaults_match_the_harness_presets():
    """The numbers `run --help` quotes for --n-train, --n-val and --seeds are the presets'."""
    import dataclasses

    from typer.main import get_command

    from qptbench import harness

    if "seeds" not in {f.name for f in dataclasses.fields(harness.HarnessConfig)}:
        pytest.skip("HarnessConfig has no seeds field yet")
    params = {p.name: p.help for p in get_command(app).commands["run"].params}
    for option, key in (("n_train", "n_train"), ("n_val", "n_val"), ("seeds", "seeds")):
        for preset in ("smoke", "small"):
            value = getattr(harness.make_config(preset), key)
            assert f"{preset} {value:,}" in params[option], (option, preset, value)


def test_version_and_the_first_steps():
    from qptbench import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == __version__
    result = runner.invoke(app, [])  # no arguments: the help, on stderr
    assert "qptbench run --molecule water" in " ".join(result.output.split())
