"""Real public data (cached, sha256-checked downloads) and a weakly paired simulator."""

from ._cmea import cmea_u2os
from ._gene_sets import gene_sets
from ._periscope import periscope_hela
from ._registry import data_dir
from ._relationships import SOURCES, corum_clusters, relationships
from ._replogle import replogle_2022, replogle_deg_ranks
from ._rxrx3 import rxrx3_core
from ._simulate import simulate_weakly_paired

__all__ = [
    "SOURCES",
    "cmea_u2os",
    "corum_clusters",
    "data_dir",
    "gene_sets",
    "periscope_hela",
    "relationships",
    "replogle_2022",
    "replogle_deg_ranks",
    "rxrx3_core",
    "simulate_weakly_paired",
]
