"""Figures of a run directory: the plotted points are the ledger's hours and the metrics'
errors, both formats are written, and runs missing a baseline or evaluations still draw."""

from __future__ import annotations

import json

import pytest
from synthetic_run import STEPS, make_run_dir

from qptbench import plots
from qptbench.rundir import load_run

H = 3600.0


def _line(ax, label):
    lines = [ln for ln in ax.lines if ln.get_label() == label]
    assert len(lines) == 1, [ln.get_label() for ln in ax.lines]
    return lines[0]


def test_error_vs_wallclock_points(tmp_path):
    run = load_run(make_run_dir(tmp_path / "run"))
    fig = plots.error_vs_wallclock_figure(run)
    ax_e, ax_h = fig.axes
    assert ax_e.get_xscale() == ax_e.get_yscale() == "log"
    qhnet = _line(ax_e, "QHNet")
    assert list(qhnet.get_xdata()) == pytest.approx(
        [(3600 + 600 * (i + 1)) / H for i in range(len(STEPS))])  # after its data creation
    assert list(qhnet.get_ydata()) == pytest.approx([0.5 * 10 / s for s in STEPS])
    qpt = _line(ax_h, "QPT")
    assert list(qpt.get_xdata()) == pytest.approx(
        [(180 + 360 * (i + 1)) / H for i in range(len(STEPS))])
    assert list(qpt.get_ydata()) == pytest.approx([1000 / s for s in STEPS])
    assert list(_line(ax_e, "QPT zero model (A = 0)").get_ydata()) == [5.0, 5.0]
    assert list(_line(ax_h, "QPT zero model (A = 0)").get_ydata()) == [900.0, 900.0]
    (shade,) = [p for p in ax_e.patches if p.get_label() == "QHNet data creation"]
    corners = ax_e.transData.inverted().transform(shade.get_window_extent().get_points())
    x_right = corners[:, 0].max()
    assert x_right == pytest.approx(1.0)  # 3600 s of labels = 1 h


def test_training_curves_panels(tmp_path):
    run = load_run(make_run_dir(tmp_path / "run"))
    fig = plots.training_curves_figure(run)
    signed, abs_e, d_h, d_eps = fig.axes
    assert list(_line(signed, "QPT").get_ydata()) == pytest.approx([-10 / s for s in STEPS])
    assert list(_line(signed, "QPT").get_xdata()) == list(STEPS)
    assert list(_line(abs_e, "QHNet").get_ydata()) == pytest.approx([5 / s for s in STEPS])
    assert list(_line(d_eps, "QPT (occupied)").get_ydata()) == pytest.approx(
        [3000 / s for s in STEPS])
    assert {ln.get_label() for ln in d_eps.lines} >= {"QPT (all)", "QHNet (all)",
                                                      "QHNet (occupied)"}
    assert abs_e.get_yscale() == d_h.get_yscale() == "log"


def test_make_plots_writes_png_and_svg(tmp_path):
    run_dir = make_run_dir(tmp_path / "run", methods=("qpt",))
    paths = plots.make_plots(run_dir)
    assert sorted(p.name for p in paths) == ["error_vs_wallclock.png", "error_vs_wallclock.svg",
                                             "training_curves.png", "training_curves.svg"]
    for p in paths:
        assert p.parent == run_dir / "plots"
        head = p.read_bytes()[:200]
        assert head.startswith(b"\x89PNG") if p.suffix == ".png" else b"<svg" in p.read_bytes()


def test_degenerate_runs_still_draw(tmp_path):
    run_dir = make_run_dir(tmp_path / "run")
    (run_dir / "qhnet" / "metrics.jsonl").write_text("")  # baseline never evaluated
    rows = [json.loads(x) for x in (run_dir / "qpt" / "metrics.jsonl").read_text().splitlines()]
    rows[0]["delta_e_mev"] = 0.0  # exact zero cannot go on a log axis: dropped, not a crash
    (run_dir / "qpt" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = load_run(run_dir)
    fig = plots.error_vs_wallclock_figure(run)
    assert len(_line(fig.axes[0], "QPT").get_xdata()) == len(STEPS) - 1
    assert not [ln for ln in fig.axes[0].lines if ln.get_label() == "QHNet"]
    (run_dir / "qpt" / "metrics.jsonl").write_text("")
    fig = plots.training_curves_figure(load_run(run_dir))
    assert any("not recorded" in t.get_text() for t in fig.axes[0].texts)
    assert len(plots.make_plots(run_dir, tmp_path / "figs")) == 4
