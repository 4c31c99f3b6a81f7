"""Figures of a run directory: the plotted points are the ledger's hours (per seed) and the shared
evaluator's curve points, the controls come from results.csv, both formats are written, and runs
missing a baseline, evaluations or results still draw."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from synthetic_run import N_MOL, STEPS, curve_value, factor, make_run_dir, score_value

from qptbench.report import plots
from qptbench.report.rundir import PLOT_NAMES, PLOT_SUFFIXES, load_run

H = 3600.0


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return make_run_dir(tmp_path_factory.mktemp("built") / "run")


@pytest.fixture
def run_dir(built, tmp_path):
    return Path(shutil.copytree(built, tmp_path / "run"))


def _line(ax, label):
    lines = [ln for ln in ax.lines if ln.get_label() == label]
    assert len(lines) == 1, [ln.get_label() for ln in ax.lines]
    return lines[0]


def _seed_lines(ax, method):
    """The lines of one method, first seed first (it carries the label; later seeds are paler)."""
    color = plots.COLORS[method]
    lines = [ln for ln in ax.lines if ln.get_color() == color and ln.get_linestyle() == "-"]
    return sorted(lines, key=lambda ln: -(ln.get_alpha() or 1.0))


def _zero_mean(key, k):
    return sum(score_value("zero", None, k, m, key) for m in range(N_MOL)) / N_MOL


def test_error_vs_wallclock_points_per_seed(built):
    run = load_run(built)
    fig = plots.error_vs_wallclock_figure(run)
    ax_e, ax_h = fig.axes
    assert ax_e.get_xscale() == ax_e.get_yscale() == "log"
    for ax, key, k in ((ax_e, "delta_e_mev", 3), (ax_h, "delta_h_uha", 1)):
        for method, own in (("qhnet", 3600.0), ("qpt", 0.0)):
            per_step = {"qhnet": 600.0, "qpt": 420.0}[method]
            lines = _seed_lines(ax, method)
            assert len(lines) == 2  # one per seed
            assert lines[0].get_label() == {"qpt": "QPT", "qhnet": "QHNet"}[method]
            assert lines[1].get_label().startswith("_")  # one legend entry per method
            for seed, line in zip((0, 1), lines, strict=True):
                # x: the route's own hours from the ledger (QHNet: after its labels; QPT: the
                # trained seconds, which hold the in-loop tensor preparation)
                assert list(line.get_xdata()) == pytest.approx(
                    [(own + per_step * factor(seed) * (i + 1)) / H for i in range(len(STEPS))])
                assert list(line.get_ydata()) == pytest.approx(
                    [curve_value(method, seed, key, k, s) for s in STEPS])
        zero = _line(ax, "zero model (same k)")  # the control, from results.csv
        assert list(zero.get_ydata()) == pytest.approx([_zero_mean(key, k)] * 2)
    (shade,) = [p for p in ax_e.patches if p.get_label() == "QHNet data creation"]
    corners = ax_e.transData.inverted().transform(shade.get_window_extent().get_points())
    assert corners[:, 0].max() == pytest.approx(1.0)  # 3600 s of labels = 1 h
    assert not [p for p in ax_e.patches if p.get_label() == "QPT data creation"]  # no labels


def test_training_curves_panels(built):
    run = load_run(built)
    fig = plots.training_curves_figure(run)
    e1, e3, d_h, d_eps = fig.axes
    for ax, key, k in ((e1, "delta_e_mev", 1), (e3, "delta_e_mev", 3), (d_h, "delta_h_uha", 1)):
        for method, name in (("qpt", "QPT"), ("qhnet", "QHNet")):
            line = _line(ax, name)  # the first seed only
            assert list(line.get_xdata()) == list(STEPS)
            assert list(line.get_ydata()) == pytest.approx(
                [curve_value(method, 0, key, k, s) for s in STEPS])
        assert list(_line(ax, "zero model").get_ydata()) == pytest.approx(
            [_zero_mean(key, k)] * 2)
        assert ax.get_yscale() == "log"
    assert list(_line(d_eps, "QPT (occupied)").get_ydata()) == pytest.approx(
        [curve_value("qpt", 0, "delta_eps_occ_uha", 1, s) for s in STEPS])
    assert list(_line(d_eps, "QHNet (all)").get_ydata()) == pytest.approx(
        [curve_value("qhnet", 0, "delta_eps_all_uha", 1, s) for s in STEPS])
    assert {ln.get_label() for ln in d_eps.lines} >= {"QPT (all)", "QHNet (occupied)"}


def test_make_plots_writes_png_and_svg(run_dir):
    paths = plots.make_plots(run_dir)
    assert sorted(p.name for p in paths) == sorted(
        f"{n}.{s}" for n in PLOT_NAMES for s in PLOT_SUFFIXES)
    for p in paths:
        assert p.parent == run_dir / "plots"
        content = p.read_bytes()
        assert content.startswith(b"\x89PNG") if p.suffix == ".png" else b"<svg" in content


def test_degenerate_runs_still_draw(run_dir, tmp_path):
    for seed in (0, 1):  # baseline never evaluated
        (run_dir / "qhnet" / f"seed{seed}" / "metrics.jsonl").write_text("")
    path = run_dir / "qpt" / "seed0" / "metrics.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    rows[0]["delta_e_mev_k3"] = 0.0  # exact zero cannot go on a log axis: dropped, not a crash
    rows[1]["delta_e_mev_k3"] = float("nan")  # neither can NaN
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fig = plots.error_vs_wallclock_figure(load_run(run_dir))
    assert len(_line(fig.axes[0], "QPT").get_xdata()) == len(STEPS) - 2
    assert not [ln for ln in fig.axes[0].lines if ln.get_label() == "QHNet"]
    for seed in (0, 1):
        (run_dir / "qpt" / f"seed{seed}" / "metrics.jsonl").write_text("")
    (run_dir / "results.csv").unlink()  # no controls either
    run = load_run(run_dir)
    for fig in (plots.training_curves_figure(run), plots.error_vs_wallclock_figure(run)):
        assert all(any("no evaluations recorded" in t.get_text() for t in ax.texts)
                   for ax in fig.axes)
        assert not any(ln.get_label().startswith("zero model") for ax in fig.axes
                       for ln in ax.lines)
    assert len(plots.make_plots(run_dir, tmp_path / "figs")) == 4
