"""The alanine map's pieces, fast: regions of the (φ, ψ) torus (wrapping), QPT's dihedral
source (deterministic per index), the grid conformations, the map and region table from
synthetic rows, and the experiment's settings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qptbench.data.regions import (
    REGIONS,
    classify,
    grid_angles,
    grid_points,
    parse_arc,
    parse_region,
)
from qptbench.errors import InputError

BOX = parse_region("0:180")


def _shifted(text: str, shift: float) -> str:
    """The same region turned by ``shift`` degrees, written as LOW:HIGH ranges."""
    out = []
    for part in text.split(","):
        low, high = (float(v) for v in part.split(":"))
        out.append(f"{low + shift:g}:{high + shift:g}")
    return ",".join(out)


# (offset of φ from the box's low edge going down / up, expected class), the box 0:180:
# offsets beyond the high edge are 180 + d, below the low edge 360 - d
CASES = [(0.0, "train"), (90.0, "train"), (180.0, "train"), (180.0 + 10.0, "band"),
         (180.0 + 19.9, "band"), (180.0 + 20.1, "far"), (270.0, "far"), (360.0 - 20.1, "far"),
         (360.0 - 10.0, "band"), (360.0 - 1e-3, "band")]


@pytest.mark.parametrize(("phi", "expected"), CASES)
def test_one_angle_outside_the_box_sets_the_class(phi, expected):
    assert classify(phi, 90.0, BOX) == expected
    assert classify(90.0, phi, BOX) == expected  # the rule is the same for ψ


@pytest.mark.parametrize(("phi", "expected"), CASES)
@pytest.mark.parametrize("shift", [0.0, 45.0, 300.0, -170.0])
@pytest.mark.parametrize("turns", [-1, 0, 2])
def test_classes_turn_with_the_box_and_ignore_whole_turns(phi, expected, shift, turns):
    """Turning box and point together keeps the class (300:120 wraps through 0), and a point
    given as angle + 360 n is the same point."""
    region = parse_region(_shifted("0:180", shift))
    point = phi + shift + 360.0 * turns
    assert classify(point, 90.0 + shift, region) == expected


def test_both_angles_just_outside_is_band_one_far_is_far():
    inside, band, far = 90.0, 190.0, 300.0
    assert classify(band, band, BOX) == "band"  # the band's corner
    assert classify(band, far, BOX) == "far"
    assert classify(far, inside, BOX) == "far"
    phi, psi = np.meshgrid(grid_angles(24), grid_angles(24))
    classes = classify(phi, psi, BOX)
    assert classes.shape == (24, 24) and set(np.unique(classes)) <= set(REGIONS)
    # each count from the cells' centres along one axis: 12 inside, 12 + 2 within 20°
    assert (classes == "train").sum() == 12 * 12
    assert (classes == "band").sum() == 14 * 14 - 12 * 12


def test_separate_phi_and_psi_ranges_and_wrapping_ones():
    region = parse_region("300:60,0:90")
    assert classify(10.0, 45.0, region) == "train"
    assert classify(330.0, 45.0, region) == "train"      # through 0
    assert classify(70.0, 45.0, region) == "band"        # 10° past 60
    assert classify(290.0, 45.0, region) == "band"       # 10° before 300
    assert classify(180.0, 45.0, region) == "far"
    assert classify(10.0, 100.0, region) == "band"       # ψ 10° past 90
    assert str(region) == "300:60,0:90" and str(BOX) == "0:180"
    assert parse_region("0:180,0:180") == BOX
    low, high = region.phi.bounds
    assert (low, high) == (300.0, 420.0)  # a draw in [300, 420] is the arc, set modulo 360


def test_whole_circle_and_bad_ranges():
    whole = parse_region("0:360")
    assert set(classify(grid_angles(8), grid_angles(8), whole)) == {"train"}
    assert parse_arc("-180:180").width == 360.0
    for bad in ("a:b", "10:10", "0:180,0:90,1:2", "", "0-180", "nan:10"):
        with pytest.raises(InputError):
            parse_region(bad)
    with pytest.raises(InputError):
        classify(0.0, 0.0, BOX, band_deg=-1.0)


def test_grid_is_cell_centres():
    for n in (4, 10, 24):
        axis = grid_angles(n)
        assert np.allclose(np.diff(axis), 360.0 / n) and math.isclose(axis[0], 180.0 / n)
        points = grid_points(n)
        assert len(points) == n * n and points[1] == (axis[0], axis[1])  # φ-major
    # even n: no centre sits on the box's edges 0 and 180
    assert not np.any(np.isclose(grid_angles(10) % 180.0, 0.0))


# ---- QPT's dihedral source and the grid geometries (RDKit) -----------------------------------

def test_dihedral_source_is_deterministic_per_index_and_stays_in_the_box():
    pytest.importorskip("rdkit")
    from qptbench.data.dihedral import dihedral_angles
    from qptbench.dft.geometry import Molecule
    from qptbench.training.qpt import make_config
    from qptbench.training.qpt_sources import make_source

    cfg = make_config("smoke", molecule="alanine_dipeptide", sampler="dihedral",
                      train_region="300:60,0:90", seed=3)
    forward, backward = make_source(cfg, 0), make_source(cfg, 0)
    first = [forward(i).positions for i in range(4)]
    last = [backward(i).positions for i in reversed(range(4))][::-1]  # other order, same items
    for a, b in zip(first, last, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(first[0], first[1])
    other_stream, other_seed = make_source(cfg, 1)(0), make_source(
        make_config("smoke", molecule="alanine_dipeptide", sampler="dihedral",
                    train_region="300:60,0:90", seed=4), 0)(0)
    assert not np.allclose(other_stream.positions, first[0])
    assert not np.allclose(other_seed.positions, first[0])
    region = parse_region(cfg.train_region)
    angles = np.array([dihedral_angles(forward(i)) for i in range(12)])
    assert set(classify(angles[:, 0], angles[:, 1], region)) == {"train"}
    ref = Molecule.builtin("alanine_dipeptide")
    assert forward(0).numbers.tolist() == ref.numbers.tolist()


def test_grid_conformations_have_the_angles_asked_for():
    pytest.importorskip("rdkit")
    from qptbench.data.dihedral import angle_difference, conformations_at, dihedral_angles

    points = grid_points(4)
    measured = np.array([dihedral_angles(m) for m in conformations_at(points)])
    np.testing.assert_allclose(angle_difference(measured, np.array(points)), 0.0, atol=1e-6)


# ---- the map and the region table from synthetic rows -----------------------------------------

def _rows(grid: int, error_ev, seeds=(0, 1), method="qpt:energy") -> list[dict]:
    phi, psi = np.array(grid_points(grid)).T
    regions = classify(phi, psi, BOX)
    rows = []
    for seed in seeds:
        for m, (a, b, region) in enumerate(zip(phi, psi, regions, strict=True)):
            for k in (0, 1, 3):
                rows.append({"method": method, "seed": seed, "dft_iterations": k,
                             "molecule": m, "phi_deg": a, "psi_deg": b, "region": str(region),
                             "delta_e_mev": 1000.0 * error_ev(a, b, seed),
                             "delta_h_uha": math.nan if k == 0 else 1.0,
                             "delta_eps_occ_uha": 2.0})
    return rows


def test_map_puts_each_point_in_its_cell_and_averages_seeds():
    from qptbench.report.alanine import log_error_map

    grid = 6

    def error(phi, psi, seed):
        return 1e-3 * (1 + phi / 60.0) * (1 + psi / 600.0) * (1 + seed)

    z = log_error_map(_rows(grid, error), "qpt:energy", 1, grid)
    axis = grid_angles(grid)
    for j, psi in enumerate(axis):
        for i, phi in enumerate(axis):
            mean = (error(phi, psi, 0) + error(phi, psi, 1)) / 2
            assert z[j, i] == pytest.approx(math.log10(mean))
    missing = [r for r in _rows(grid, error) if r["molecule"] != 0]
    assert np.isnan(log_error_map(missing, "qpt:energy", 1, grid)[0, 0])


def test_region_table_counts_every_point_once_and_marks_n_a():
    from qptbench.report.alanine import map_figure, region_table

    grid = 10
    rows = _rows(grid, lambda a, b, s: 0.01) + _rows(grid, lambda a, b, s: 0.1, seeds=(0,),
                                                     method="qhnet:labels")
    frame = region_table(rows, ["qpt:energy", "qhnet:labels"], 1)
    assert list(frame["region"]) == list(REGIONS) * 2
    for method in ("QPT", "QHNet"):
        assert frame[frame["method"] == method]["map points (count)"].sum() == grid * grid
    assert list(frame["map points (count)"][:3]) == [25, 7 * 7 - 25, 100 - 49]
    assert frame["ΔE k=1 (meV)"][0].startswith("10 [10, 10]")
    assert frame.iloc[0]["seeds (count)"] == 2 and frame.iloc[3]["seeds (count)"] == 1
    at_zero = region_table(rows, ["qpt:energy", "qhnet:labels"], 0)
    assert at_zero["ΔH k=0 (µHa)"].isna().all()  # n/a at k = 0 (gauge), never a number
    fig = map_figure(rows, ["qpt:energy", "qhnet:labels"], grid, BOX, 1, 20.0)
    assert len(fig.axes) == 3  # two maps and one shared colour bar


# ---- settings ---------------------------------------------------------------------------------

def test_presets_and_bad_options():
    from qptbench.experiments.alanine import PRESETS, make_config

    for preset in PRESETS:
        acfg = make_config(preset)
        cfg = acfg.harness
        assert cfg.n_val == acfg.grid ** 2 and cfg.molecule == "alanine_dipeptide"
        assert (cfg.basis, cfg.xc, cfg.qpt_sampler) == ("sto-3g", "b3lyp5", "dihedral")
        assert cfg.eval_every == 0 and cfg.eval_points == 0  # no selection on the map
    acfg = make_config("smoke", grid=6, train_region="-60:60", methods=("qpt", "qhnet"),
                       basis="def2-svp", k=3)
    assert acfg.harness.n_val == 36 and acfg.harness.train_region == "300:60"
    assert acfg.harness.methods == ("qpt:energy", "qhnet:labels") and acfg.k == 3
    for bad in (dict(grid=1), dict(k=2), dict(train_region="0-180"), dict(methods=("magic",)),
                dict(seeds=0), dict(budget_hours=0.0), dict(basis="no-such-basis"),
                dict(xc="b3pw")):
        with pytest.raises(InputError):
            make_config("smoke", **bad)
    with pytest.raises(InputError, match="preset"):
        make_config("huge")
