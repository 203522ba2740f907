"""The reproduction scripts' published pages: made from a committed tree only; Figure 2b redrawn from its table."""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def scripts():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("_common"), importlib.import_module("figure2b")
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_a_published_page_needs_a_committed_tree(scripts, monkeypatch, tmp_path):
    common, _ = scripts
    page = common.DOCS / "table1.md"
    monkeypatch.setattr(common, "_CHANGES_AT_START", " M src/scsemiclip/tl/_recall.py\n?? src/scsemiclip/x.py\n")
    with pytest.raises(SystemExit, match=r"uncommitted changes \(src/scsemiclip/tl/_recall.py, src/scsemiclip/x.py\)"):
        common.check_publishable(page)
    common.check_publishable(tmp_path / "table1.md")  # a trial run elsewhere (--out) is fine
    monkeypatch.setattr(common, "_CHANGES_AT_START", "")
    monkeypatch.setattr(common, "_SOURCE_TREE_AT_START", "tree at the start")
    monkeypatch.setattr(common, "_source_tree", lambda: "tree at the end")
    with pytest.raises(SystemExit, match="the sources changed during the run"):
        common.check_publishable(page)
    monkeypatch.setattr(common, "_source_tree", lambda: "tree at the start")
    common.check_publishable(page)
    monkeypatch.setattr(common, "_CHANGES_AT_START", None)  # no git: no commit to name
    with pytest.raises(SystemExit, match="git cannot name the commit"):
        common.check_publishable(page)


def test_figure2b_is_redrawn_from_its_table(scripts, tmp_path):
    _, figure2b = scripts
    shutil.copy(scripts[0].DOCS / "figure2b.csv", tmp_path / "figure2b.csv")
    figure2b.redraw(tmp_path / "figure2b.md")
    assert (tmp_path / "figure2b.png").stat().st_size > 10_000
