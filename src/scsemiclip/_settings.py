"""Package settings: one object, :data:`scsemiclip.settings` (like scanpy's ``settings`` and scvi-tools' config).

Importing this module is cheap (standard library only): it is loaded by ``import scsemiclip``.
"""

from __future__ import annotations

import difflib
import logging
import numbers
import os
from pathlib import Path

#: Environment variable that overrides the data directory (offline use, CI, shared caches).
ENV_DATA_DIR = "SCSEMICLIP_DATA_DIR"

_VERBOSITY = {"error": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO, "debug": logging.DEBUG}


class ScsemiclipConfig:
    """Global settings of scsemiclip.

    Set attributes on the instance :data:`scsemiclip.settings`, e.g. ``ssc.settings.verbosity = "info"``. The
    settings:

    verbosity
        Level of the ``"scsemiclip"`` logger: ``"error"``, ``"warning"`` (default), ``"info"`` or ``"debug"``
        (or the matching :mod:`logging` level number). At ``"info"`` every step logs its start and duration. By
        default the logger inherits the level of Python's root logger (``"warning"`` unless configured).
    n_jobs
        Number of CPU threads of scsemiclip's computations: torch's threads while a model is set up, trained
        (re-applied at every epoch) or applied, and the sort of the similarity null of known-relationship recall.
        ``None`` (default): torch's own setting when the user set one (``torch.set_num_threads`` or
        ``OMP_NUM_THREADS``), else the cores this process may use less those other processes keep busy, at
        least 1 (so a training beside another CPU-heavy process does not over-subscribe the cores, where
        spin-waiting thread pools slow every small kernel down many times). That count is read once, at the
        process's first computation, and kept, so that the fits of one process (a notebook session) with the same
        seed agree bit for bit. Torch's setting is restored afterwards. CPU results can differ in the last bits
        between thread counts, so set ``n_jobs`` (or torch's threads) to a fixed number when runs in different
        processes on a machine with a varying load must agree bit for bit.
    datasetdir
        Where downloaded data files are cached; by default ``$SCSEMICLIP_DATA_DIR`` if that variable is set, else
        the user cache directory (``pooch.os_cache("scsemiclip")``). Setting it overrides both.
    progress_bar
        Show a training progress bar (one live bar in a terminal or notebook, a line every few seconds in a log
        file) and the progress lines of :func:`~scsemiclip.tl.evaluate_map` (one per representation and metric,
        on stderr unless the ``"scsemiclip"`` logger shows info); ``False`` switches them off. An explicit
        ``enable_progress_bar=`` of a training call wins.
    """

    def __init__(self) -> None:
        self._n_jobs: int | None = None
        self._datasetdir: Path | None = None
        self._progress_bar = True

    def __setattr__(self, name: str, value: object) -> None:
        """Set a setting; an unknown name (a typo such as ``njobs``) is an error, not a new attribute."""
        if not name.startswith("_") and not isinstance(getattr(type(self), name, None), property):
            raise AttributeError(_unknown_setting(name))
        super().__setattr__(name, value)

    def __getattr__(self, name: str) -> object:
        """Called for names that are not settings: an error naming the close matches."""
        raise AttributeError(name if name.startswith("_") else _unknown_setting(name))

    # ------------------------------------------------------------------------------------------------- verbosity
    @property
    def verbosity(self) -> str:
        """Level of the ``"scsemiclip"`` logger (a name of :data:`logging` levels, lower case)."""
        level = logging.getLogger("scsemiclip").getEffectiveLevel()
        return next((name for name, value in _VERBOSITY.items() if value == level), str(level))

    @verbosity.setter
    def verbosity(self, value: str | int) -> None:
        if isinstance(value, str) and value.lower() in _VERBOSITY:
            level = _VERBOSITY[value.lower()]
        elif isinstance(value, numbers.Integral) and not isinstance(value, bool) and value in _VERBOSITY.values():
            level = int(value)
        else:
            raise ValueError(f"`verbosity` must be one of {list(_VERBOSITY)} (or a logging level), got {value!r}.")
        logging.getLogger("scsemiclip").setLevel(level)

    # ------------------------------------------------------------------------------------------------- n_jobs
    @property
    def n_jobs(self) -> int:
        """CPU threads of the threaded parts (resolved: never ``None``)."""
        if self._n_jobs is not None:
            return self._n_jobs
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not on Linux
            return max(1, os.cpu_count() or 1)

    @n_jobs.setter
    def n_jobs(self, value: int | None) -> None:
        from scsemiclip._validate import check_int  # numpy: not at import time

        self._n_jobs = check_int(value, name="n_jobs", minimum=1, none_ok=True)

    # ------------------------------------------------------------------------------------------------- datasetdir
    @property
    def datasetdir(self) -> Path:
        """The data cache directory (see the class description for the default)."""
        if self._datasetdir is not None:
            return self._datasetdir
        override = os.environ.get(ENV_DATA_DIR)
        if override:
            return Path(override).expanduser()
        import pooch

        return Path(pooch.os_cache("scsemiclip"))

    @datasetdir.setter
    def datasetdir(self, value: str | os.PathLike | None) -> None:
        if value is not None and not isinstance(value, str | os.PathLike):
            raise TypeError(f"`datasetdir` must be a path or None, got {type(value).__name__}.")
        self._datasetdir = None if value is None else Path(value).expanduser()

    # ------------------------------------------------------------------------------------------------- progress_bar
    @property
    def progress_bar(self) -> bool:
        """Whether training shows a progress bar."""
        return self._progress_bar

    @progress_bar.setter
    def progress_bar(self, value: bool) -> None:
        from scsemiclip._validate import check_flag  # numpy: not at import time

        self._progress_bar = check_flag(value, name="progress_bar")

    def __repr__(self) -> str:
        """The settings as configured (``None``: the default, resolved when used)."""
        fields = {
            "verbosity": self.verbosity,
            "n_jobs": self._n_jobs,
            "datasetdir": None if self._datasetdir is None else str(self._datasetdir),
            "progress_bar": self._progress_bar,
        }
        return f"{type(self).__name__}(" + ", ".join(f"{k}={v!r}" for k, v in fields.items()) + ")"


def _unknown_setting(name: str) -> str:
    """The message for a name that is not a setting, with the close matches."""
    known = [k for k, v in vars(ScsemiclipConfig).items() if isinstance(v, property)]
    close = difflib.get_close_matches(name, known, n=2, cutoff=0.6)
    hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
    return f"scsemiclip.settings has no setting {name!r}{hint}; the settings are {known}."


#: The settings of this process.
settings = ScsemiclipConfig()


def _running_threads(stat_paths: list[str]) -> int:
    """How many of the threads whose ``/proc/.../stat`` files are given are running (state ``R``)."""
    running = 0
    for path in stat_paths:
        try:
            with open(path) as f:
                running += f.read().rsplit(")", 1)[1].split()[0] == "R"
        except (OSError, IndexError):  # the thread ended meanwhile
            continue
    return running


def busy_cores(samples: int = 5, interval: float = 0.002) -> int:
    """Cores kept busy by other processes now: running threads of the machine less this process's (Linux).

    The median of ``samples`` readings of ``/proc/loadavg`` (runnable threads) ``interval`` seconds apart; 0 where
    ``/proc`` is not available.
    """
    import glob
    import time

    own = glob.glob(f"/proc/{os.getpid()}/task/*/stat")
    counts = []
    for _ in range(samples):
        try:
            with open("/proc/loadavg") as f:
                machine = int(f.read().split()[3].split("/")[0])
        except (OSError, IndexError, ValueError):
            return 0
        counts.append(max(0, machine - max(1, _running_threads(own))))
        time.sleep(interval)
    return sorted(counts)[len(counts) // 2]


def compute_threads(torch_threads: int, *, torch_default: int) -> int:
    """The CPU threads of a computation (see ``n_jobs`` of :class:`ScsemiclipConfig`).

    Parameters
    ----------
    torch_threads
        Torch's current thread count.
    torch_default
        The count torch started with; a different current count, or ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` in
        the environment, is the user's setting.

    Returns
    -------
    ``settings.n_jobs`` when set; else torch's count when the user set it; else the cores not kept busy by other
    processes (at least 1), as they were at the first call of the process.
    """
    if settings._n_jobs is not None:
        return settings._n_jobs
    if torch_threads != torch_default or any(os.environ.get(v) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")):
        return torch_threads
    if not _PROCESS_DEFAULT:  # read once: the same seed gives the same bits for the whole process
        _PROCESS_DEFAULT.append(max(1, settings.n_jobs - busy_cores()))
    return _PROCESS_DEFAULT[0]


#: The load-adapted thread count of this process, read at its first computation (see :func:`compute_threads`).
_PROCESS_DEFAULT: list[int] = []
