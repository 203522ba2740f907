"""The tutorials in ../tutorials run from top to bottom on small settings.

Every ``tutorials/*.ipynb`` is executed in a fresh ``python3`` kernel with ``SCSEMICLIP_TUTORIAL_FAST=1`` (each
notebook shrinks its data, epochs and seeds), ``MPLBACKEND=Agg`` and a temporary working directory; the data
cache is the one of this session (``SCSEMICLIP_DATA_DIR``, set by ``conftest.py`` to ``../shared/data`` when it
exists). Each notebook ends with a cell of assertions on its key results, so "runs without error" also checks
them. The stored outputs of the notebooks (from a full run, rendered in the documentation) are not modified.

Refresh the stored outputs after a change that moves the results (a few minutes per notebook on a CPU)::

    python tests/test_tutorials.py            # every notebook
    python tests/test_tutorials.py huvec      # one notebook
"""

from __future__ import annotations

import os
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
    assert 'os.environ.get("SCSEMICLIP_TUTORIAL_FAST", "0") == "1"' in code[0].source, (
        f"the first code cell of {path.name} must read SCSEMICLIP_TUTORIAL_FAST"
    )
    assert all(cell.get("execution_count") for cell in code), f"{path.name} is stored with unexecuted cells"
    errors = [out for cell in code for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors, f"{path.name} is stored with an error output: {errors[0].get('ename')}"
    fast = [cell.source for cell in code if "FAST=True" in "".join(o.get("text", "") for o in cell.get("outputs", []))]
    assert not fast, f"{path.name} is stored with the outputs of a fast run; store a full run"
    assert path.stat().st_size < 2_000_000, f"{path.name} is {path.stat().st_size:,} bytes; keep outputs small"


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
    for name in names:
        path = TUTORIALS / f"{name}.ipynb"
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            nbformat.write(execute(path, fast=False, cwd=Path(tmp)), path)
        print(f"{path.name}: stored a full run ({time.perf_counter() - start:.0f} s)")
