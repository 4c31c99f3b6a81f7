"""The repository stands alone: every document it points to is in it.

Relative markdown links in README.md and docs/*.md must resolve; every ``*.md`` path named in
README.md, pyproject.toml, docs/ and the Python sources must exist (a bare name at the repository
root or next to the file, anything else spelt with its path from the root or from the file, e.g.
``docs/qpt-method.md``); and nothing may point outside the repository to design notes that ship
without it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"[\w./-]*(?:\.\./shared|/work/shared|shared/design)[\w./-]*")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# a file name or path ending in .md; not a dotted module name (qptbench.data.md, ase.md.langevin)
MD_PATH = re.compile(r"(?<![\w./-])((?:\.\.?/)*[\w/-]*\w\.md)(?![\w-]|\.\w)")

# References that are dangling in files other people own, listed so the test stays green while
# they are fixed: remove an entry when its file is fixed (the test then keeps it fixed).  Each
# entry: (file, kind, text) as ``problems`` reports it.  Empty: every reference resolves.
PENDING: set[tuple[str, str, str]] = set()


def sources() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "pyproject.toml", *sorted((ROOT / "docs").glob("*.md"))]
    for folder in ("qptbench", "baselines", "benchmarks", "tests", "datasets"):
        files += sorted(p for p in (ROOT / folder).rglob("*")
                        if p.suffix in (".py", ".md") and "__pycache__" not in p.parts)
    return files


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def problems() -> list[tuple[str, str, str]]:
    found = []
    for path in sources():
        if path == Path(__file__).resolve():
            continue  # this file names the patterns it looks for
        text = path.read_text(encoding="utf-8")
        for match in OUTSIDE.finditer(text):
            found.append((rel(path), "outside", match.group(0)))
        if path.suffix == ".md":
            for target in LINK.findall(text):
                if re.match(r"[a-z]+:", target) or target.startswith("#"):
                    continue  # a URL or an anchor in the same page
                if not (path.parent / target.split("#")[0]).exists():
                    found.append((rel(path), "link", target))
        for name in MD_PATH.findall(text):
            if OUTSIDE.search(name):
                continue  # reported above
            module = name.replace(".", "/") + ".py"  # ``data.md`` = the module qptbench.data.md
            if path.suffix == ".py" and (ROOT / "qptbench" / module).exists():
                continue
            if not ((path.parent / name).exists() or (ROOT / name).exists()):
                found.append((rel(path), "missing", name))
    return found


def test_every_named_document_exists_and_none_is_outside():
    left = [p for p in problems() if p not in PENDING]
    assert not left, "\n".join(f"{f}: {kind} {text}" for f, kind, text in left)


def test_pending_entries_are_still_needed():
    fixed = sorted(PENDING - set(problems()))
    assert not fixed, f"fixed, remove from PENDING: {fixed}"


@pytest.mark.parametrize("page", ["architecture.md", "qpt-method.md", "qhnet-method.md"])
def test_docs_pages_exist_and_readme_links_the_method_pages(page):
    assert (ROOT / "docs" / page).read_text(encoding="utf-8").startswith("# ")
    if page != "architecture.md":
        assert f"](docs/{page})" in (ROOT / "README.md").read_text(encoding="utf-8")
