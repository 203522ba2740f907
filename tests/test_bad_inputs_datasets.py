"""Bad inputs of ``datasets``: a named ValueError / TypeError before any file is read or anything simulated."""

from __future__ import annotations

import re

import pytest

import scsemiclip as ssc

CASES = [
    ("relationships", {"source": "KEGG"}, ValueError, "KEGG"),
    ("relationships", {"source": 3}, TypeError, "source"),
    ("relationships", {"source": None}, TypeError, "source"),
    ("replogle_deg_ranks", {"cell_line": "hela"}, ValueError, "cell_line"),
    ("replogle_deg_ranks", {"weighting": "exp"}, ValueError, "weighting"),
    ("replogle_deg_ranks", {"n_comps": 0}, ValueError, "n_comps"),
    ("replogle_deg_ranks", {"n_comps": 8.0}, TypeError, "n_comps"),
    ("replogle_2022", {"kind": "pseudobulk"}, ValueError, "kind"),
    ("cmea_u2os", {"as_mudata": "no"}, TypeError, "as_mudata"),
    ("gene_sets", {"name": 3}, TypeError, "gene_sets"),
    ("gene_sets", {"name": "no_such_collection"}, ValueError, "no_such_collection"),
    ("simulate_weakly_paired", {"n_controls": 1}, ValueError, "n_controls"),
    ("simulate_weakly_paired", {"n_latent": 2.5}, ValueError, "n_latent"),
    ("simulate_weakly_paired", {"edge_fraction": float("nan")}, ValueError, "edge_fraction"),
    ("simulate_weakly_paired", {"student_noise": float("inf")}, ValueError, "student_noise"),
    ("simulate_weakly_paired", {"n_compounds": True}, ValueError, "n_compounds"),
    ("simulate_weakly_paired", {"rng": "seed"}, TypeError, "rng"),
]


@pytest.mark.parametrize(("name", "kwargs", "error", "text"), CASES, ids=[f"{c[0]}-{c[3]}" for c in CASES])
def test_bad_argument(name, kwargs, error, text):
    with pytest.raises(error, match=re.escape(text)):
        getattr(ssc.datasets, name)(**kwargs)
