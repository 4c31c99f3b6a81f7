"""``qptbench run`` end to end on the smoke preset, in a temp dir: ledger, tables, plots."""

import json

import pytest
from typer.testing import CliRunner

from qptbench.cli import app
from qptbench.ledger import read_ledger
from qptbench.rundir import OUTPUT_FILES
from qptbench.tables import check_run


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "water"
    result = CliRunner().invoke(app, ["run", "--molecule", "water", "--preset", "smoke",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_smoke_run_writes_consistent_evidence(smoke_run):
    out, text = smoke_run
    assert check_run(out) == []
    for name in OUTPUT_FILES:
        assert (out / name).exists(), name
    run = json.loads((out / "run.json").read_text())
    assert run["level_of_theory"]["xc"] == "b3lyp5" and run["environment"]["torch_version"]
    entries = read_ledger(out / "ledger.jsonl")
    phases = {(e["phase"], e["method"]) for e in entries}
    assert ("sample", "shared") in phases and ("reference", "shared") in phases
    assert ("train", "qpt") in phases
    assert all(e["wall_seconds"] >= 0 and e["cpu_seconds"] is not None for e in entries)
    assert "Table 1" in text and "ΔE (meV)" in text and "reported (paper)" in text


def test_resume_keeps_finished_work(smoke_run):
    out, _ = smoke_run
    before = read_ledger(out / "ledger.jsonl")
    result = CliRunner().invoke(app, ["run", "--molecule", "water", "--preset", "smoke",
                                      "--out", str(out), "--resume"])
    assert result.exit_code == 0, result.output
    after = read_ledger(out / "ledger.jsonl")
    assert after[: len(before)] == before
    new_phases = {e["phase"] for e in after[len(before):]}
    assert not new_phases & {"sample", "label"}  # nothing sampled or labelled twice
    assert check_run(out) == []


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
