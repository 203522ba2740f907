"""Bad inputs of the ``scsemiclip`` command: one line naming the option or file, exit 2 (usage) or 1 (data)."""

from __future__ import annotations

import anndata as ad
import h5py
import numpy as np
import pytest
from conftest import make_embedding_adata

from scsemiclip._cli import _in_flags, build_parser, main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_bad")
    adata = make_embedding_adata(n_obs=40, n_dims=4, n_batches=1)
    adata.write_h5ad(root / "good.h5ad")
    (root / "random.h5ad").write_bytes(np.random.default_rng(0).bytes(300))
    with h5py.File(root / "not_anndata.h5ad", "w") as f:
        f["x"] = [1, 2, 3]
    (root / "a_file").write_text("x")
    (root / "corrupt_model").mkdir()
    (root / "corrupt_model" / "model.pt").write_bytes(b"PK\x03\x04" + b"\0" * 40)
    return root


GOOD_FIT = ["fit", "--student", "{good}", "--teacher", "{good}"]
USAGE = [
    ([*GOOD_FIT, "--out", "{root}/o.h5ad", "--lr", "nan"], "--lr"),
    ([*GOOD_FIT, "--out", "{root}/o.h5ad", "--lr", "0"], "--lr"),
    ([*GOOD_FIT, "--out", "{root}/o.h5ad", "--lr", "inf"], "--lr"),
    ([*GOOD_FIT, "--out", "{root}/o.h5ad", "--epochs", "0"], "--epochs"),
    ([*GOOD_FIT, "--out", "{root}/o.h5ad", "--epochs", "-1"], "--epochs"),
    ([*GOOD_FIT, "--out", "{root}/o.h5ad", "--epochs", "abc"], "--epochs"),
    ([*GOOD_FIT, "--out", "{root}/o.h5ad", "--batch-size", "0"], "--batch-size"),
    ([*GOOD_FIT, "--out", "{root}/o.h5ad", "--no-pea", "--recipe", "pea"], "--no-pea"),
    ([*GOOD_FIT, "--out", "{root}/o.h5ad", "--seed", "-1"], "--seed"),
    ([*GOOD_FIT, "--out", "{root}/o.h5ad", "--accelerator", "tpu"], "--accelerator"),
    ([*GOOD_FIT, "--out", "{root}/no_such_folder/o.h5ad"], "--out"),
    ([*GOOD_FIT, "--out", "{root}"], "--out"),
    ([*GOOD_FIT, "--out", "{root}/o.h5ad", "--model-dir", "{root}/a_file"], "--model-dir"),
    (["fit", "--student", "{root}/missing.h5ad", "--teacher", "{good}", "--out", "{root}/o.h5ad"], "--student"),
    (["fit", "--student", "{good}", "--teacher", "{root}", "--out", "{root}/o.h5ad"], "--teacher"),
    ([*GOOD_FIT], "--out"),
    (["apply", "--adata", "{good}", "--model-dir", "{root}/a_file", "--out", "{root}/o.h5ad"], "--model-dir"),
    (["apply", "--adata", "{good}", "--model-dir", "{root}/nope", "--out", "{root}/o.h5ad"], "--model-dir"),
    (["apply", "--adata", "{good}", "--model-dir", "{root}", "--out", "{root}/x/o.h5ad"], "--out"),
    (["evaluate", "--adata", "{good}", "--use-rep", "X_emb", "--plot", "{root}/x/p.png"], "--plot"),
    (["evaluate", "--adata", "{root}/missing.h5ad", "--use-rep", "X_emb"], "--adata"),
    (["evaluate", "--adata", "{good}", "--use-rep", "X_emb", "--null-size", "0"], "--null-size"),
    (["quickstart", "--epochs", "0"], "--epochs"),
    (["quickstart", "--interpretability-epochs", "0"], "--interpretability-epochs"),
    (["quickstart", "--out", "{root}/x/q.png"], "--out"),
    (["nope"], "invalid choice"),
]
DATA = [
    ([*GOOD_FIT[:2], "{root}/random.h5ad", *GOOD_FIT[3:], "--out", "{root}/o.h5ad"], "random.h5ad"),
    (["fit", "--student", "{good}", "--teacher", "{root}/not_anndata.h5ad", "--out", "{root}/o.h5ad"], "not_anndata"),
    (["apply", "--adata", "{root}/not_anndata.h5ad", "--model-dir", "{root}", "--out", "{root}/o.h5ad"], "--adata"),
    (["apply", "--adata", "{good}", "--model-dir", "{root}/corrupt_model", "--out", "{root}/o.h5ad"], "model.pt"),
    (["apply", "--adata", "{good}", "--model-dir", "{root}", "--out", "{root}/o.h5ad"], "no model.pt"),
    (["evaluate", "--adata", "{root}/random.h5ad", "--use-rep", "X_emb"], "random.h5ad"),
    (["evaluate", "--adata", "{good}", "--use-rep", "X_emb", "--metrics", "nope"], "'nope' in --metrics;"),
]


def _run(argv, files, capsys):
    argv = [a.format(root=files, good=files / "good.h5ad") for a in argv]
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        status = exit_.code
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return status, err


@pytest.mark.parametrize(("argv", "text"), USAGE, ids=[f"{a[0]}-{t}-{i}" for i, (a, t) in enumerate(USAGE)])
def test_usage_error_is_one_line_with_status_2(files, capsys, argv, text):
    status, err = _run(argv, files, capsys)
    assert status == 2
    assert text in err
    assert not (files / "o.h5ad").exists()


@pytest.mark.parametrize(("argv", "text"), DATA, ids=[f"{a[0]}-{t}" for a, t in DATA])
def test_data_error_is_one_line_with_status_1(files, capsys, argv, text):
    status, err = _run(argv, files, capsys)
    assert status == 1
    assert text in err
    assert "weights_only=False" not in err


def test_options_and_outputs_are_checked_before_reading_data(files, capsys):
    argv = ["fit", "--student", "{root}/random.h5ad", "--teacher", "{good}", "--out", "{root}/x/o.h5ad"]
    status, err = _run(argv, files, capsys)
    assert status == 2 and "--out" in err  # not the unreadable --student: that would need reading it
    assert ad.read_h5ad(files / "good.h5ad").n_obs == 40


def test_library_messages_name_the_flags_not_the_python_arguments():
    args = build_parser().parse_args(["evaluate", "--adata", "a.h5ad", "--use-rep", "X"])
    message = "`metrics` names 'interpretability' but `interpretability=False`; `output_tvn=True`, `use_reps`, `rng`"
    assert _in_flags(message, args) == (
        "--metrics names 'interpretability' but no --interpretability; no --no-tvn, --use-rep, --seed"
    )
    assert _in_flags("`layer` and `key_added`", args) == "`layer` and `key_added`"  # not flags of evaluate
    fit = build_parser().parse_args(["fit", "--student", "s", "--teacher", "t", "--out", "o"])
    assert _in_flags("`max_epochs` and `pea=False` and `key_added`", fit) == "--epochs and --no-pea and --key-added"
