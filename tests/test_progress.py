"""The shared progress bar keeps its name and its bar when postfix fields fill the line."""

from tqdm import tqdm

from qptbench.progress import BAR_FORMAT, make_bar


def test_bar_survives_long_postfix():
    line = tqdm.format_meter(3, 10, 1.0, ncols=80, prefix="labels: water.h5", unit="conf",
                             bar_format=BAR_FORMAT,
                             postfix="loss=1.23, dE=0.001, grad=2.3, lr=0.001, skipped=0")
    assert line.startswith("labels: water.h5:  30%|")
    assert line.count("|") == 2 and len(line.split("|")[1]) == 20
    assert "3/10" in line  # the postfix is what gets cut at 80 columns, not the bar


def test_make_bar_signature():
    bar = make_bar(5, "train qpt", initial=2, unit="step")
    assert bar.total == 5 and bar.n == 2 and bar.desc == "train qpt" and bar.unit == "step"
    bar.close()
