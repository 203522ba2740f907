"""The tutorials in ../tutorials run from top to bottom on small settings.

Every ``tutorials/*.ipynb`` is executed in a fresh ``python3`` kernel with ``SCSEMICLIP_TUTORIAL_FAST=1`` (each
notebook shrinks its data, epochs and seeds), ``MPLBACKEND=Agg`` and a temporary working directory; the data
cache is the one of this session (``SCSEMICLIP_DATA_DIR``, set by ``conftest.py`` to ``../shared/data`` when it
exists). Each notebook ends with a cell of assertions on its key results, so "runs without error" also checks
them; that cell is tagged ``remove-cell``, so the documentation does not show it. The stored outputs of the notebooks (from a full run, rendered in the documentation) are not modified.

Refresh the stored outputs after a change that moves the results (a few minutes per notebook on a CPU; a notebook
edited while it runs is not stored)::

    python tests/test_tutorials.py            # every notebook
    python tests/test_tutorials.py huvec      # one notebook
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the `test` extra installs nbformat")
nbclient = pytest.importorskip("nbclient", reason="the `test` extra installs nbclient")
pytest.importorskip("ipykernel", reason="the `test` extra installs ipykernel")

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
#: Seconds one cell may run (fast mode); a whole notebook takes a minute or two on two CPU cores.
CELL_TIMEOUT = 600


def execute(path: Path, *, fast: bool, cwd: Path) -> nbformat.NotebookNode:
    """Run a notebook in a fresh ``python3`` kernel (working directory ``cwd``) and return it with its outputs."""
    nb = nbformat.read(path, as_version=4)
    env = {**os.environ, "SCSEMICLIP_TUTORIAL_FAST": "1" if fast else "0"}
    if fast:
        env["MPLBACKEND"] = "Agg"
    else:
        env.pop("MPLBACKEND", None)  # the inline backend, so that the figures are stored
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute(env=env)  # raises CellExecutionError, naming the cell, on the first error
    return nb


def test_tutorials_exist():
    assert {p.stem for p in NOTEBOOKS} >= {"huvec", "rpe1"}, NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_with_outputs_and_clean(path):
    """The docs render the stored outputs (``nb_execution_mode = "off"``): they must be there, without errors."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, f"{path.name} has no code cell"
    assert 'os.environ.get("SCSEMICLIP_TUTORIAL_FAST", "0") == "1"' in _shown_code(nb)[0].source, (
        f"the first code cell shown of {path.name} must read SCSEMICLIP_TUTORIAL_FAST"
    )
    set_up = [c for c in code if "filterwarnings" in c.source or "setLevel" in c.source]
    assert all(HIDDEN_SOURCE & set(c.metadata.get("tags", [])) for c in set_up), (
        f"{path.name} shows its warning and logging set-up; tag that cell `hide-input` (the page opens with the science)"
    )
    assert all(cell.get("execution_count") for cell in code), f"{path.name} is stored with unexecuted cells"
    errors = [out for cell in code for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors, f"{path.name} is stored with an error output: {errors[0].get('ename')}"
    fast = [cell.source for cell in code if "FAST=True" in "".join(o.get("text", "") for o in cell.get("outputs", []))]
    assert not fast, f"{path.name} is stored with the outputs of a fast run; store a full run"
    assert path.stat().st_size < 2_000_000, f"{path.name} is {path.stat().st_size:,} bytes; keep outputs small"


#: Longest code line shown in the documentation (the page's code column fits about 90 characters).
MAX_CODE_LINE = 90
#: myst-nb cell tags that hide a cell's source from the rendered page.
HIDDEN_SOURCE = {"remove-cell", "remove-input", "hide-input", "hide-cell"}


def _shown_code(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code" and not HIDDEN_SOURCE & set(c.metadata.get("tags", []))]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_written_for_readers(path):
    """What the page shows: no test-suite assertions, no private imports, code that fits the page, links."""
    nb = nbformat.read(path, as_version=4)
    shown = _shown_code(nb)
    checks = [
        c.source.splitlines()[0] for c in shown if sum(ln.startswith("assert ") for ln in c.source.splitlines()) > 1
    ]
    assert not checks, f"{path.name}: cells of assertions are shown; tag them `remove-cell`: {checks}"
    private = [ln for c in shown for ln in c.source.splitlines() if re.search(r"\bscsemiclip(\.\w+)*\._\w", ln)]
    assert not private, f"{path.name} imports or uses private scsemiclip names: {private}"
    long = [ln for c in shown for ln in c.source.splitlines() if len(ln) > MAX_CODE_LINE]
    assert not long, f"{path.name} has code lines over {MAX_CODE_LINE} characters: {long}"
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    others = [p.name for p in NOTEBOOKS if p != path]
    literal = [name for name in others if f"`tutorials/{name}`" in prose]
    assert not literal, f"{path.name} names {literal} as literal text; link it: {{doc}}`title <{literal[0][:-6]}>`"
    assert any(re.search(rf"\{{doc\}}`[^`]*<{name[:-6]}>`", prose) for name in others), (
        f"{path.name} links to none of {others} (a {{doc}} link)"
    )
    assert "{func}`" in prose, f"{path.name} links to no API page"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    start = time.perf_counter()
    nb = execute(path, fast=True, cwd=tmp_path)
    elapsed = time.perf_counter() - start
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
    text = "".join(out.get("text", "") for out in outputs if out.get("output_type") == "stream")
    assert "FAST=True" in text, f"{path.name} did not run in fast mode"
    assert "notebook ran in" in text, f"{path.name} did not reach its final cell"
    print(f"{path.name}: {elapsed:.0f} s in fast mode")


if __name__ == "__main__":
    import tempfile

    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    if "SCSEMICLIP_DATA_DIR" not in os.environ and shared.is_dir():
        os.environ["SCSEMICLIP_DATA_DIR"] = str(shared)
    names = sys.argv[1:] or [p.stem for p in NOTEBOOKS]
    failed = []
    for name in names:
        path = TUTORIALS / f"{name}.ipynb"
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            executed = execute(path, fast=False, cwd=Path(tmp))
        sources = [(c.cell_type, c.source, c.metadata.get("tags")) for c in executed.cells]
        now = nbformat.read(path, as_version=4)
        if sources != [(c.cell_type, c.source, c.metadata.get("tags")) for c in now.cells]:
            print(f"{path.name} was edited while it ran; not stored, run it again", file=sys.stderr)
            failed.append(name)
            continue
        nbformat.write(executed, path)
        print(f"{path.name}: stored a full run ({time.perf_counter() - start:.0f} s)")
    sys.exit(1 if failed else 0)
