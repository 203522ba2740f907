"""Under SCSEMICLIP_NO_SKIP=1 a skipped test fails (but for missing CUDA); the real-data fixture finds the data."""

from __future__ import annotations

import _real_data
import pytest
from _real_data import real_data_dir
from _skips import ALLOWED_REASONS, ENV_NO_SKIP

from scsemiclip._settings import ENV_DATA_DIR
from scsemiclip.datasets._registry import REGISTRY

SKIPPING = f"""
import pytest

needs_cuda = pytest.mark.skipif(True, reason={ALLOWED_REASONS[0]!r})


@pytest.fixture
def data():
    pytest.skip("no data")


def test_fixture_skips(data):
    pass


@pytest.mark.skipif(True, reason="not today")
def test_marked():
    pass


def test_skips_itself():
    pytest.skip("later")


@needs_cuda
def test_cuda():
    pass


@pytest.mark.xfail(reason="known", strict=True)
def test_expected_failure():
    assert False


def test_passes():
    pass
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest("from _skips import pytest_make_collect_report, pytest_runtest_makereport")
    pytester.makepyfile(test_suite=SKIPPING, test_module_skip="import pytest\npytest.importorskip('not_a_module_x')")
    return pytester


def test_skips_fail_under_no_skip(suite, monkeypatch):
    monkeypatch.setenv(ENV_NO_SKIP, "1")
    result = suite.runpytest("-p", "no:cacheprovider", "--continue-on-collection-errors")
    result.assert_outcomes(passed=1, failed=1, skipped=1, xfailed=1, errors=3)  # set-up skips: errors
    result.stdout.fnmatch_lines([f"*skipped (no data), and {ENV_NO_SKIP}=1 allows no skip*"])


def test_skips_are_skips_otherwise(suite, monkeypatch):
    monkeypatch.delenv(ENV_NO_SKIP, raising=False)
    result = suite.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=5, xfailed=1)


def test_the_data_folder_is_the_variables(shared_data, tmp_path, monkeypatch):
    """A clone anywhere reads the files where SCSEMICLIP_DATA_DIR points (here: links to the session's files)."""
    for name in REGISTRY:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).symlink_to(shared_data / name)
    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path))
    assert real_data_dir() == tmp_path


def test_missing_data_skips_with_the_reason(tmp_path, monkeypatch):
    def offline(name):
        raise OSError(f"Could not download {name!r}")

    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path / "empty"))
    monkeypatch.setattr(_real_data, "fetch", offline)
    with pytest.raises(pytest.skip.Exception, match="not in .*empty and cannot be downloaded: Could not download"):
        real_data_dir()
