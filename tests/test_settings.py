"""scsemiclip.settings, the shared docstring texts and the device resolver."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

import scsemiclip as ssc
from scsemiclip._core import resolve_device
from scsemiclip._docs import doc_params


@pytest.fixture
def restore_settings():
    s = ssc.settings
    saved = (s._n_jobs, s._datasetdir, s._progress_bar, logging.getLogger("scsemiclip").level)
    yield s
    s._n_jobs, s._datasetdir, s._progress_bar = saved[:3]
    logging.getLogger("scsemiclip").setLevel(saved[3])


def test_verbosity_sets_the_package_logger(restore_settings):
    s = restore_settings
    s.verbosity = "info"
    assert logging.getLogger("scsemiclip").level == logging.INFO and s.verbosity == "info"
    s.verbosity = logging.ERROR
    assert s.verbosity == "error"
    with pytest.raises(ValueError, match="verbosity"):
        s.verbosity = "loud"


def test_n_jobs(restore_settings):
    s = restore_settings
    assert s.n_jobs >= 1
    s.n_jobs = 1
    assert s.n_jobs == 1
    s.n_jobs = None
    assert s.n_jobs >= 1
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="n_jobs"):
            s.n_jobs = bad


def test_datasetdir_defaults_to_the_environment(restore_settings, monkeypatch, tmp_path):
    s = restore_settings
    monkeypatch.setenv("SCSEMICLIP_DATA_DIR", str(tmp_path))
    assert s.datasetdir == tmp_path
    s.datasetdir = tmp_path / "other"
    assert s.datasetdir == tmp_path / "other"
    s.datasetdir = None
    monkeypatch.delenv("SCSEMICLIP_DATA_DIR")
    assert "scsemiclip" in str(s.datasetdir)
    with pytest.raises(TypeError, match="datasetdir"):
        s.datasetdir = 3


def test_progress_bar_and_repr(restore_settings):
    s = restore_settings
    with pytest.raises(TypeError, match="progress_bar"):
        s.progress_bar = "no"
    s.progress_bar = False
    assert "progress_bar=False" in repr(s)


def test_doc_params_replaces_only_its_placeholders():
    @doc_params(doc_x="x\n        The x.")
    def f(x):
        """Do {"a": 1}.

        Parameters
        ----------
        {doc_x}
        """

    assert '{"a": 1}' in f.__doc__ and "The x." in f.__doc__ and "{doc_x}" not in f.__doc__
    with pytest.raises(KeyError, match="placeholders"):

        @doc_params(doc_y="y")
        def g():
            """{doc_x}"""


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="accelerator"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="device"):
        resolve_device("cpu", -1)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            resolve_device("gpu")


def test_settings_is_a_public_name():
    assert "settings" in dir(ssc) and isinstance(ssc.settings.datasetdir, Path)
