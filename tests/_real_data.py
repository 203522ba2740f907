"""Where the tests read the real data files: ``$SCSEMICLIP_DATA_DIR`` (``conftest.py`` sets it to ../shared/data
beside the clone when that folder exists and the variable is not set), else the user cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from scsemiclip.datasets._registry import REGISTRY, data_dir, fetch


def real_data_dir() -> Path:
    """The folder of the real data files: ``$SCSEMICLIP_DATA_DIR``, else ../shared/data, else the user cache.

    Every file of the registry is checked against its sha256 there, and downloaded once where it is missing. Only
    when a file can be neither found nor downloaded are the real-data tests skipped, with the reason (a failure
    under ``SCSEMICLIP_NO_SKIP=1``).
    """
    try:
        for name in REGISTRY:
            fetch(name)
    except OSError as err:
        pytest.skip(f"the real data files are not in {data_dir()} and cannot be downloaded: {err}")
    return data_dir()
