"""scsemiclip.settings, the shared docstring texts and the device resolver."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
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
    for bad, error in ((0, ValueError), (-2, ValueError), (1.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match="n_jobs"):
            s.n_jobs = bad
    s.n_jobs = np.int64(2)  # numpy integers are integers
    assert s.n_jobs == 2 and type(s.n_jobs) is int


def test_unknown_setting_is_an_error_naming_close_matches(restore_settings):
    s = restore_settings
    n_jobs = s._n_jobs
    with pytest.raises(AttributeError, match=r"no setting 'njobs' \(did you mean 'n_jobs'\?\)"):
        s.njobs = 2
    with pytest.raises(AttributeError, match="progress_bar"):
        s.progressbar  # noqa: B018
    assert not hasattr(s, "njobs") and s._n_jobs == n_jobs


def test_numpy_scalars_are_accepted(restore_settings):
    s = restore_settings
    s.progress_bar = np.bool_(False)
    assert s.progress_bar is False
    s.verbosity = np.int64(logging.INFO)
    assert s.verbosity == "info"


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
