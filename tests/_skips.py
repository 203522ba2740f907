"""A skipped test fails when ``SCSEMICLIP_NO_SKIP=1`` (CI), except the CUDA-only tests on a machine without CUDA.

A suite that skips its real-data tests (no data folder, no network) would otherwise pass green without ever
reading real data. The hooks are imported by ``conftest.py``; ``tests/test_skips.py`` tests them.
"""

from __future__ import annotations

import os

import pytest

#: The environment variable that turns skips into failures.
ENV_NO_SKIP = "SCSEMICLIP_NO_SKIP"
#: The skip reasons allowed under ``SCSEMICLIP_NO_SKIP=1``: tests that need hardware the machine may not have.
ALLOWED_REASONS = ("needs a CUDA device",)


def _fail_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Turn a skipped report into a failure naming the reason, unless the reason is allowed or it is an xfail."""
    if os.environ.get(ENV_NO_SKIP) != "1" or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    reason = reason.removeprefix("Skipped: ")
    if reason in ALLOWED_REASONS:
        return
    report.outcome = "failed"
    report.longrepr = (
        f"skipped ({reason}), and {ENV_NO_SKIP}=1 allows no skip but those for missing hardware "
        f"({', '.join(ALLOWED_REASONS)}). For the real-data tests, point SCSEMICLIP_DATA_DIR at the data folder."
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A skip at set-up or in a test (``pytest.skip``, ``skipif``, a skipping fixture)."""
    outcome = yield
    _fail_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    """A skip at collection (``pytest.importorskip`` at module level)."""
    outcome = yield
    _fail_skip(outcome.get_result())
