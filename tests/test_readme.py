"""README's two commands stay true: CI runs exactly README's test command."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST_COMMAND = "pip install torch==2.13.0 && pip install -e '.[test]' && ruff check . && " \
               'pytest -q -m "not slow"'


def test_ci_runs_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert TEST_COMMAND in readme
    assert TEST_COMMAND in ci


def test_readme_main_command_uses_existing_cli():
    readme = (ROOT / "README.md").read_text()
    assert "pip install -e . && qptbench run --molecule water" in readme


RESULTS = ROOT / "results" / "water-small"


def test_readme_quotes_the_committed_small_run_verbatim():
    """README's comparison is generated: the summary and Table 4 of the committed run folder,
    word for word (rebuild them with `qptbench publish`, see README)."""
    readme = (ROOT / "README.md").read_text()
    for path in (RESULTS / "summary.txt", ROOT / "results/water-small/tables/table4_protocol.md"):
        text = path.read_text().strip()
        assert text in readme, f"README does not quote {path.relative_to(ROOT)} verbatim"


def test_committed_results_are_a_consistent_run_directory():
    from qptbench.report.checks import check_run

    assert check_run(RESULTS) == []


GRID = ROOT / "results" / "water-grid"


def test_readme_quotes_the_committed_grid_run_verbatim():
    """The training-signal × architecture section quotes the grid run's generated summary and
    grid table word for word."""
    readme = (ROOT / "README.md").read_text()
    for path in (GRID / "summary.txt", ROOT / "results/water-grid/tables/grid.md"):
        text = path.read_text().strip()
        assert text in readme, f"README does not quote {path.relative_to(ROOT)} verbatim"


def test_committed_grid_run_is_a_consistent_run_directory():
    from qptbench.report.checks import check_run

    assert check_run(GRID) == []


ALANINE = ROOT / "results" / "alanine-small"


def test_readme_quotes_the_committed_alanine_run_verbatim():
    """The alanine-map section shows the small run's generated region table word for word
    and its generated map."""
    from qptbench.report.alanine import REGION_TABLE

    readme = (ROOT / "README.md").read_text()
    text = (ALANINE / "tables" / f"{REGION_TABLE}.md").read_text().strip()
    assert text in readme, "README does not quote results/alanine-small's region table verbatim"
    assert "(results/alanine-small/alanine_map.png)" in readme
    assert (ALANINE / "alanine_map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert text in (ALANINE / "summary.txt").read_text()


def test_committed_alanine_run_is_a_consistent_run_directory():
    from qptbench.report.checks import check_run

    assert check_run(ALANINE) == []


def test_readme_quotes_the_side_by_side_speed_run_verbatim():
    """README's speed table is the script's own output, machine line included."""
    readme = (ROOT / "README.md").read_text()
    text = (ROOT / "results" / "speed" / "side_by_side.txt").read_text().strip()
    assert text in readme
    assert text.startswith("# ") and "cores" in text.splitlines()[0]
