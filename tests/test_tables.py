"""Tables from run directories: costs traced to the ledger per method and seed, accuracy rows per
method and k from scores.csv with bootstrap intervals, controls beside the routes, paper rows
kept apart, checks that fail on broken runs, the `qptbench tables` command."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from synthetic_run import (
    CONTROLS,
    K_VALUES,
    N_MOL,
    STEPS,
    factor,
    make_run_dir,
    score_value,
)

from qptbench.evaluation.stats import summarize
from qptbench.report import checks, paper_rows, tables
from qptbench.report.outputs import write_run_outputs
from qptbench.report.rundir import OUTPUT_FILES, PLOTS_DIR, TABLES_DIR, load_run

H = 3600.0
SEEDS = (0, 1)
CELL = re.compile(r"^(\S+) \[(\S+), (\S+)\]$")
ROUTES = {"qpt": "QPT", "qhnet": "QHNet"}
DIGITS = 6e-3  # cells print 3 significant digits


@pytest.fixture(scope="module")
def ethanol_qpt(tmp_path_factory):
    return make_run_dir(tmp_path_factory.mktemp("b") / "b", methods=("qpt",),
                        molecule="ethanol", seeds=(0,))


def _measured(frame):
    return tables.split(frame)[0]


def _row(frame, method, **where):
    rows = frame[frame["method"] == method]
    for col, value in where.items():
        rows = rows[rows[col] == value]
    assert len(rows) == 1, frame
    return rows.iloc[0]


def _cell(text):
    """"mean [lo, hi]" -> (mean, lo, hi)."""
    match = CELL.match(text)
    assert match, text
    return tuple(float(x) for x in match.groups())


def _expected(method, k, metric):
    """What scores.csv holds, summarised by seed (a control has one "seed")."""
    seeds = SEEDS if method in ROUTES else (None,)
    return {s: [score_value(method, s, k, m, metric) for m in range(N_MOL)] for s in seeds}


# -- Table 1: cost ----------------------------------------------------------------------------

def test_cost_table_books_every_phase_per_seed(built, built_tables):
    run_dir = built
    frame = _measured(built_tables[True]["table1_cost"])
    assert list(zip(frame["method"], frame["seed"], strict=True)) == [
        ("QPT", "0"), ("QPT", "1"), ("QHNet", "0"), ("QHNet", "1")]
    for seed in SEEDS:
        f = factor(seed)
        qhnet, qpt = (_row(frame, m, seed=str(seed)) for m in ("QHNet", "QPT"))
        # QHNet: its labels (no seed in the ledger) are the data creation of every seed
        assert qhnet[tables.DATA_H] == pytest.approx(1.0)
        assert qhnet[tables.TENSORS_H] == 0.0
        assert qhnet[tables.TRAIN_H] == pytest.approx(3 * 600 * f / H)
        assert qhnet[tables.TOTAL_H] == pytest.approx((3600 + 3 * 600 * f) / H)
        assert qhnet[tables.EVAL_H] == pytest.approx((3 * 6 + 4) / H)
        assert qhnet[tables.CPU_H] == pytest.approx((7000 + 3 * 1100 * f) / H)
        # QPT: no labels; the in-loop preparation is moved out of training; validation-sample
        # tensors are evaluation cost, not preparation
        assert qpt[tables.DATA_H] == 0.0
        assert qpt[tables.TENSORS_H] == pytest.approx(180 * f / H)
        assert qpt[tables.TRAIN_H] == pytest.approx((3 * 420 - 180) * f / H)
        assert qpt[tables.TOTAL_H] == pytest.approx(3 * 420 * f / H)
        assert qpt[tables.EVAL_H] == pytest.approx((9 + 3 * 3 + 4) / H)
        assert qpt[tables.CPU_H] == pytest.approx(3 * 700 * f / H)
        for row in (qhnet, qpt):  # shared costs are shown on every row, in no total
            assert row[tables.REF_H] == pytest.approx(72 / H)
            assert row[tables.SAMPLE_H] == pytest.approx(36 / H)
            assert row["steps (count)"] == STEPS[-1]
            assert row["source"] == str(run_dir)
            parts = row[tables.DATA_H] + row[tables.TENSORS_H] + row[tables.TRAIN_H]
            assert row[tables.TOTAL_H] == pytest.approx(parts)


def test_included_in_train_moves_preparation_out_of_training(run_dir):
    run = load_run(run_dir)
    for clock, train, prep in (("wall", 420.0, 180.0), ("cpu", 700.0, 300.0)):
        s = run.seconds("qpt", clock, seed=1)
        assert s["tensors"] == pytest.approx(2 * prep)
        assert s["training"] == pytest.approx(2 * (3 * train - prep))
        assert run.total_seconds("qpt", clock, seed=1) == pytest.approx(2 * 3 * train)
    # without the flag the same entry is preparation on top of training: counted twice
    ledger = run_dir / "ledger.jsonl"
    entries = [json.loads(x) for x in ledger.read_text().splitlines()]
    for e in entries:
        e.pop("included_in", None)
    ledger.write_text("".join(json.dumps(e) + "\n" for e in entries))
    s = load_run(run_dir).seconds("qpt", seed=1)
    assert s["training"] == pytest.approx(2 * 3 * 420)
    assert s["tensors"] == pytest.approx(2 * 180)


def test_seeds_apart_and_together(built):
    run = load_run(built)
    assert run.seeds == [0, 1] and set(run.seed_runs) == {(m, s) for m in ROUTES for s in SEEDS}
    both = run.seconds("qhnet")  # every seed, each entry once: the labels are not doubled
    assert both["data_creation"] == pytest.approx(3600)
    assert both["training"] == pytest.approx(3 * 600 * (1 + 2))
    every = run.seconds(None)
    assert every["sampling"] == 36 and every["reference"] == 72
    assert every["evaluation"] == pytest.approx(5 + 2 * (3 * 6 + 4) + 2 * (9 + 3 * 3 + 4))
    assert every["unbooked"] == 0


def test_hours_at_step_counts_own_costs_only(built):
    run = load_run(built)
    for seed in SEEDS:
        f = factor(seed)
        assert run.hours_at_step("qhnet", seed) == pytest.approx(
            {s: (3600 + 600 * f * (i + 1)) / H for i, s in enumerate(STEPS)})
        # trained_seconds already holds the in-loop preparation: not added twice
        assert run.hours_at_step("qpt", seed) == pytest.approx(
            {s: 420 * f * (i + 1) / H for i, s in enumerate(STEPS)})
    assert run.hours_at_step("qpt") == run.hours_at_step("qpt", 0)  # default: first seed


def test_results_csv_costs_trace_to_the_ledger(built, built_tables):
    results = pd.read_csv(built / "results.csv")
    cost = _measured(built_tables[True]["table1_cost"])
    for method, name in ROUTES.items():
        for seed in SEEDS:
            own = results[(results["method"] == method) & (results["seed"] == seed)]
            assert sorted(own["dft_iterations"]) == list(K_VALUES)
            row = _row(cost, name, seed=str(seed))
            assert own["wall_hours"].tolist() == pytest.approx([row[tables.TOTAL_H]] * 3)
            assert own["training_hours"].tolist() == pytest.approx([row[tables.TRAIN_H]] * 3)
            assert own["tensor_hours"].tolist() == pytest.approx([row[tables.TENSORS_H]] * 3)
            assert (own["steps"] == STEPS[-1]).all() and (own["kind"] == "method").all()
    controls = results[results["kind"] == "control"]
    assert set(controls["method"]) == set(CONTROLS) and controls["wall_hours"].isna().all()


# -- Table 2: accuracy ------------------------------------------------------------------------

def test_accuracy_rows_per_method_and_k_with_controls(built, built_tables):
    run_dir = built
    frame = _measured(built_tables[True]["table2_accuracy"])
    expected = [(name, k) for name in ("QPT", "QHNet", *CONTROLS) for k in K_VALUES]
    assert list(zip(frame["method"], frame[tables.K_COLUMN], strict=True)) == expected
    assert (frame["source"] == str(run_dir)).all() and (frame["molecule"] == "water").all()
    assert (frame["molecules (count)"] == N_MOL).all()
    for method in (*ROUTES, *CONTROLS):
        name = ROUTES.get(method, method)
        for k in K_VALUES:
            row = _row(frame, name, **{tables.K_COLUMN: k})
            assert row["seeds (count)"] == (2 if method in ROUTES else 0)
            assert row[tables.FLOOR] == pytest.approx(np.mean([1e-8 * (m + 1)
                                                               for m in range(N_MOL)]))
            scf_cycles = {"label": 1, "zero": 8}.get(method, 5)  # molecule 0 only
            assert row[tables.SCF_RATIO] == pytest.approx((scf_cycles + k) / 10)
            hours = {"qpt": 3 * 420 * 1.5 / H, "qhnet": (3600 + 3 * 600 * 1.5) / H}
            if method in hours:
                assert row[tables.ROUTE_H] == pytest.approx(hours[method])
            else:
                assert pd.isna(row[tables.ROUTE_H])
            for key, column in tables.METRIC_COLUMNS.items():
                values = _expected(method, k, key)
                if method == "qpt" and k == 0 and key != "delta_e_mev":
                    assert pd.isna(row[column]), (column, row[column])  # gauge: n/a, not 0
                    continue
                mean, lo, hi = _cell(row[column])  # printed to 3 significant digits
                truth = np.mean([np.mean(v) for v in values.values()])
                assert mean == pytest.approx(truth, rel=DIGITS), (method, k, key)
                pooled = [x for v in values.values() for x in v]
                assert lo <= mean <= hi
                assert lo >= min(pooled) * (1 - DIGITS) and hi <= max(pooled) * (1 + DIGITS)
                # the hierarchical bootstrap over seeds, then molecules, of scores.csv
                stats = summarize(values)
                assert lo == pytest.approx(stats["ci_low"], rel=DIGITS)
                assert hi == pytest.approx(stats["ci_high"], rel=DIGITS)
                if method != "label" and key != "psi_occ":
                    assert lo < mean < hi  # molecules differ: a real interval


def test_accuracy_label_control_at_the_floor(built_tables):
    frame = _measured(built_tables[True]["table2_accuracy"])
    for k in K_VALUES:
        label = _row(frame, "label", **{tables.K_COLUMN: k})
        assert _cell(label["ΔE (meV)"])[0] <= 1e-4
        assert _cell(label["ψ occupied (cos)"]) == (1.0, 1.0, 1.0)
    assert _cell(_row(frame, "label", **{tables.K_COLUMN: 0})["ΔH (µHa)"]) == (0.0, 0.0, 0.0)
    assert _cell(_row(frame, "QHNet", **{tables.K_COLUMN: 0})["ΔH (µHa)"])[0] > 0


def test_accuracy_follows_scores_csv(run_dir):
    """The table is built from scores.csv, not from the curves in metrics.jsonl."""
    scores = pd.read_csv(run_dir / "scores.csv")
    mask = (scores["method"] == "qhnet") & (scores["dft_iterations"] == 3)
    scores.loc[mask, "delta_e_mev"] = 7.0
    scores.to_csv(run_dir / "scores.csv", index=False)
    row = _row(_measured(tables.accuracy_table([run_dir])), "QHNet", **{tables.K_COLUMN: 3})
    assert _cell(row["ΔE (meV)"]) == (7.0, 7.0, 7.0)
    (run_dir / "scores.csv").unlink()
    assert _measured(tables.accuracy_table([run_dir])).empty


def test_inference_table(built_tables):
    row = _measured(built_tables[True]["table3_inference"]).iloc[0]
    assert row["PySCF SCF (s/molecule)"] == pytest.approx(0.5)
    assert row["QPT network + DFT iterations (s/molecule)"] == pytest.approx(0.04)
    assert row["QPT incl. tensor preparation (s/molecule)"] == pytest.approx(0.24)
    assert row["QHNet network (s/molecule)"] == pytest.approx(0.02)
    assert row["molecules timed (count)"] == 4


# -- paper rows, several runs, rendering ------------------------------------------------------

@pytest.mark.parametrize("name", list(tables.TABLES))
def test_paper_rows_apart_and_units(built, built_tables, name):
    run_dir, frame = built, built_tables[True][name]
    sources = list(frame["source"])
    n_measured = sum(s != paper_rows.REPORTED for s in sources)
    assert n_measured >= 1
    assert all(s == str(run_dir) for s in sources[:n_measured])
    assert all(s == paper_rows.REPORTED for s in sources[n_measured:])
    if name in ("table1_cost", "table2_accuracy", "table3_inference"):
        assert len(sources) > n_measured  # the paper reports water in these tables
    if "molecule" in frame:
        assert set(frame["molecule"]) == {"water"}  # only the measured molecule's paper rows
    assert checks._check_frame(name, frame, str(run_dir)) == []
    alone = built_tables[False][name]
    assert list(alone["source"]) == sources[:n_measured]  # paper=False: the measured rows only


def test_paper_values_spot_checks():
    t2 = {(r["molecule"], r["method"]): r for r in paper_rows.TABLE2}
    assert t2["uracil", "QPT"]["delta_e_mev"] == 0.524
    assert t2["water", "QHNet"]["delta_eps_reported_uha"] == 31.62
    t1 = {(r["molecule"], r["method"]): r for r in paper_rows.TABLE1}
    assert t1["uracil", "SchNOrb"]["total_h"] == 786 and t1["water", "QPT"]["total_h"] == 16.3
    t3 = {r["molecule"]: r for r in paper_rows.TABLE3}
    assert t3["uracil"]["qpt_with_tensors_s"] == 1.729 and t3["ethanol"]["pyscf_scf_s"] == 3.9
    assert {r["molecule"] for r in paper_rows.TABLE2} == set(paper_rows.MOLECULES)


def test_several_runs_one_table(built, ethanol_qpt):
    a, b = built, ethanol_qpt
    frame = tables.cost_table([a, b])
    measured = _measured(frame)
    assert list(zip(measured["source"], measured["method"], measured["seed"], strict=True)) == [
        (str(a), "QPT", "0"), (str(a), "QPT", "1"), (str(a), "QHNet", "0"),
        (str(a), "QHNet", "1"), (str(b), "QPT", "0")]
    assert set(frame["molecule"]) == {"water", "ethanol"}
    acc = _measured(tables.accuracy_table([a, b]))
    assert list(acc[acc["source"] == str(b)]["method"]) == [
        name for name in ("QPT", *CONTROLS) for _ in K_VALUES]
    inference = _measured(tables.inference_table([a, b]))
    assert inference["QHNet network (s/molecule)"].isna().tolist() == [False, True]


def test_render_keeps_blocks_apart(built, built_tables):
    run_dir, frame = built, built_tables[True]["table2_accuracy"]
    md = tables.render(frame, "markdown", "T2")
    measured_part, paper_part = md.split("Reported in the paper")
    assert "reported (paper)" not in measured_part and str(run_dir) in measured_part
    assert "reported (paper)" in paper_part and str(run_dir) not in paper_part
    assert "Δε as reported (µHa)" in paper_part and "Δε occupied (µHa)" in measured_part
    assert "| label " in measured_part and "| scf-diis " in measured_part
    assert "\\toprule" in tables.render(frame, "latex")
    csv = tables.render(frame, "csv")
    back = pd.read_csv(io.StringIO(csv))
    assert list(back.columns) == list(frame.columns) and len(back) == len(frame)
    with pytest.raises(ValueError, match="unknown format"):
        tables.render(frame, "html")


def test_only_qpt_run(ethanol_qpt, tmp_path):
    run_dir = Path(shutil.copytree(ethanol_qpt, tmp_path / "qpt_only"))
    written, text = write_run_outputs(run_dir)
    assert {p.relative_to(run_dir).as_posix() for p in written} == {
        f for f in OUTPUT_FILES if f.startswith((f"{TABLES_DIR}/", f"{PLOTS_DIR}/"))}
    assert all(f"| {name} " in text for name in ("QPT", *CONTROLS))
    assert checks.check_run(run_dir) == []
