"""The ``scsemiclip`` command: help, scripted fit / apply / evaluate on .h5ad files, one-line errors."""

from __future__ import annotations

import anndata as ad
import pytest

import scsemiclip as ssc
from scsemiclip._cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    data = ssc.datasets.simulate_weakly_paired(
        n_compounds=30, n_doses=1, n_replicates=2, n_batches=2, n_controls=6, n_genes=60, n_ood_genes=25, rng=0
    )
    root = tmp_path_factory.mktemp("cli")
    paths = {}
    for name in ("student", "teacher", "ood"):
        paths[name] = root / f"{name}.h5ad"
        data[name].write_h5ad(paths[name])
    paths["root"] = root
    return paths


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("quickstart", "fit", "apply", "evaluate"):
        assert command in out


def test_fit_apply_evaluate(files, capsys):
    out, model_dir = files["root"] / "fitted.h5ad", files["root"] / "model"
    common = ["--student-rep", "X_emb", "--teacher-rep", "X_phenom", "--pair-keys", "perturbation", "dose"]
    status = main(
        ["fit", "--student", str(files["student"]), "--teacher", str(files["teacher"]), *common]
        + ["--epochs", "2", "--batch-size", "16", "--accelerator", "cpu", "--model-dir", str(model_dir)]
        + ["--out", str(out)]
    )
    assert status == 0
    fitted = ad.read_h5ad(out)
    assert fitted.obsm["X_semiclipped"].shape == (fitted.n_obs, 16)
    chosen = fitted.uns["X_semiclipped"]["recipe"]["chosen"]
    assert f"Recipe: {chosen} (" in capsys.readouterr().out  # the recipe trained, and how it was chosen

    applied = files["root"] / "ood_out.h5ad"
    status = main(["apply", "--adata", str(files["ood"]), "--model-dir", str(model_dir), "--out", str(applied)])
    assert status == 0
    assert "X_semiclipped" in ad.read_h5ad(applied).obsm

    capsys.readouterr()
    status = main(["evaluate", "--adata", str(applied), "--use-rep", "X_emb", "X_semiclipped"])
    assert status == 0
    table = capsys.readouterr().out
    for column in ("CORUM", "HuMAP", "Reactome", "SIGNOR", "StringDB", "mean"):
        assert column in table
    assert "X_semiclipped" in table


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fit", "--student", "missing.h5ad", "--teacher", "missing.h5ad", "--out", "o.h5ad"], "not found"),
        (["evaluate", "--adata", "missing.h5ad", "--use-rep", "X"], "not found"),
        (["apply", "--adata", "{ood}", "--model-dir", "no_such_dir", "--out", "o.h5ad"], "not a directory"),
        (["evaluate", "--adata", "{ood}", "--use-rep", "X_nope"], "X_nope"),
    ],
)
def test_errors_are_one_line(files, capsys, argv, message):
    argv = [a.replace("{ood}", str(files["ood"])) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1
    assert "Traceback" not in err
