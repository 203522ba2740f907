"""Cached, sha256-checked downloads of the public files scsemiclip uses (pooch)."""

from __future__ import annotations

from pathlib import Path

import pooch
import requests

from scsemiclip._settings import ENV_DATA_DIR, settings

_EFAAR = (
    "https://raw.githubusercontent.com/recursionpharma/EFAAR_benchmarking/"
    "2248f400630abfb711bb442be7e29a34c70d4720/efaar_benchmarking/benchmark_annotations/"
)
_SIGRECON = "https://raw.githubusercontent.com/montilab/sigrecon/f46667725636e99057bb18a541534e3704546fb9/data/"
_PERISCOPE = (
    "https://raw.githubusercontent.com/broadinstitute/2022_PERISCOPE/"
    "d8136e56db0eeb8adceb9d6aca0c1d36c9e74551/3_HELA_WGS_Summary/outputs/HeLa_HPLM_hit_list_PCA.csv"
)
_CMEA = "https://raw.githubusercontent.com/isarnassiri/CMEA/960cda0c627f45b82bdf636a250c91ef1f9b2d46/data/"
_REACTOME_GMT = (
    "https://raw.githubusercontent.com/markziemann/vpa-senescence/"
    "a36fe56e72ca65276969b5ac47889ccb938ddbd0/ReactomePathways.gmt"
)

#: file name (relative to the cache) -> (sha256, upstream URL)
REGISTRY: dict[str, tuple[str, str]] = {
    "relationships/CORUM.txt": (
        "edaafc77a184ef452996d211e9fe1699615315a36e1efc9d602042c06168a695",
        _EFAAR + "CORUM.txt",
    ),
    "relationships/HuMAP.txt": (
        "6d08074df77f1a7274e754bc6e5e29aa438004bec0a13cbfb934c2c81328f3c4",
        _EFAAR + "HuMAP.txt",
    ),
    "relationships/Reactome.txt": (
        "ed3cd0fc32d2fe3510f167e9df39668bc9637348d78787615d3f970b2b862e70",
        _EFAAR + "Reactome.txt",
    ),
    "relationships/SIGNOR.txt": (
        "00525d3a90198378b54c5c3093374d5c9ee0550bbd799f06b443512a465bcad3",
        _EFAAR + "SIGNOR.txt",
    ),
    "relationships/StringDB.txt": (
        "7955c846a551530c07b1eb508404cf15ef0b77ea39ad2368ed40c5c099dedb8c",
        _EFAAR + "StringDB.txt",
    ),
    "relationships/CORUM_clusters.tsv": (
        "caab1d3db6fa694c001f41e2973492d248ea3936a1249be3bf497648071f5c99",
        _EFAAR + "CORUM_clusters.tsv",
    ),
    "perturbseq.rpe1.rda": (
        "9864c598f3c7835f5eefaa16bfd38a7498d7d7eedf10f84d50e6e3bc70003732",
        _SIGRECON + "perturbseq.rpe1.rda",
    ),
    "perturbseq.k562.rda": (
        "ffb040655e6fc717537f4e27624fa4b55de0425049541e24238fe676d1eb8085",
        _SIGRECON + "perturbseq.k562.rda",
    ),
    "periscope_hela_hplm_hit_list_pca.csv": (
        "a8ee823d5be0fa5ad3aa6028bf598bccd153e45b92a3d91c0115fe9c2617d836",
        _PERISCOPE,
    ),
    "cmea_transcriptomic_profile.rda": (
        "408fc21276e58737712960188056bbaa3c09dd9a1e91809d7f9a332f149d41b7",
        _CMEA + "Transcriptomic_Profile.rda",
    ),
    "cmea_cell_morphology_profile.rda": (
        "3c93451202101c5ea6f25fadd90b87716f56e25220b0dae673fd7f0fa1b40f44",
        _CMEA + "Cell_Morphology_Profile.rda",
    ),
    "genesets/ReactomePathways.gmt": (
        "dad43596299f6416b971e913ea736442e498d493e49552fbf3ffc4c407288a74",
        _REACTOME_GMT,
    ),
}


def data_dir() -> Path:
    """The data cache directory, ``scsemiclip.settings.datasetdir``.

    Returns
    -------
    The directory set in ``scsemiclip.settings.datasetdir``; by default ``$SCSEMICLIP_DATA_DIR`` if that variable
    is set, else the user cache directory (``pooch.os_cache("scsemiclip")``).
    """
    return settings.datasetdir


def fetch(name: str, *, download: bool = True) -> Path:
    """Return the local path of registry file ``name``, downloading and sha256-checking it if needed.

    Parameters
    ----------
    name
        A key of :data:`REGISTRY` (e.g. ``"relationships/CORUM.txt"``).
    download
        ``False``: a file not in :func:`data_dir` raises :class:`FileNotFoundError` instead of being downloaded.

    Returns
    -------
    Path to the verified file in :func:`data_dir`.
    """
    if name not in REGISTRY:
        raise KeyError(f"Unknown data file {name!r}; known files: {', '.join(sorted(REGISTRY))}.")
    sha256, url = REGISTRY[name]
    if not download and not (data_dir() / name).is_file():
        raise FileNotFoundError(f"{name!r} is not in {data_dir()} (and download=False).")
    return fetch_url(url, fname=name, known_hash=f"sha256:{sha256}")


def fetch_url(url: str, *, fname: str, known_hash: str | None) -> Path:
    """Download ``url`` into :func:`data_dir` as ``fname`` (hash-checked when ``known_hash`` is given)."""
    try:
        path = pooch.retrieve(url, known_hash=known_hash, fname=fname, path=data_dir(), progressbar=False)
    except (OSError, requests.exceptions.RequestException) as err:
        raise OSError(
            f"Could not download {fname!r} from {url} into {data_dir()} ({type(err).__name__}). Without network, "
            f"put the file there or point ${ENV_DATA_DIR} at a folder that holds it."
        ) from err
    return Path(path)
