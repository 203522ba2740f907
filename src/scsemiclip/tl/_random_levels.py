"""The random level of each evaluation metric: what a map without information scores, by construction.

These are the levels the plots draw as "random" and the pages quote. A *measured* random baseline (the metric of a
random embedding of the same shape, :func:`~scsemiclip.tl.random_baseline`, the "Random baseline" rows of the
reproduction tables) is an estimate on one dataset and seed: it scatters around the level (for interpretability,
about 22 to 30 on the screens of the tutorials and benchmarks, because a decoder fitted to noise does not predict a
constant) and is the fair reference for that dataset.
"""

from __future__ import annotations

#: Default tail fraction of :func:`~scsemiclip.tl.known_relationship_recall` (``threshold``).
RECALL_THRESHOLD = 0.05

#: The random level of each metric, in the units its function returns (recall as a fraction, interpretability in
#: points of 0-100). ``recall``: a random map puts a known pair in either tail of ``threshold`` with probability
#: ``2 * threshold`` (0.10, 10 %); ``recall_right``: the top tail alone, ``threshold`` (0.05, 5 %);
#: ``interpretability``: a prediction constant within each batch has structural integrity 0.5 and Spearman
#: correlation 0, so it scores ``100 * (0.5 + 0) / 2 = 25``.
RANDOM_LEVELS: dict[str, float] = {
    "recall": 2 * RECALL_THRESHOLD,
    "recall_right": RECALL_THRESHOLD,
    "interpretability": 25.0,
}
