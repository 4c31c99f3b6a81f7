"""baselines/ installs as qptbench.baselines, and no subpackage is left out of a real install."""

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_and_baselines_is_mapped():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts)
               for p in (ROOT / "qptbench").rglob("__init__.py")}
    assert on_disk <= listed, f"add to [tool.setuptools] packages: {sorted(on_disk - listed)}"
    assert config["package-dir"]["qptbench.baselines"] == "baselines"
    assert (ROOT / "baselines" / "__init__.py").exists()


def test_baselines_import_from_the_installed_name():
    import qptbench.baselines.qhnet as qhnet

    assert Path(qhnet.__file__).resolve().parent == ROOT / "baselines"
