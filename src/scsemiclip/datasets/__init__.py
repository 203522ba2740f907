"""Real public data (cached, sha256-checked downloads) and a weakly paired simulator."""

from ._registry import data_dir
from ._relationships import SOURCES, corum_clusters, relationships

__all__ = ["SOURCES", "corum_clusters", "data_dir", "relationships"]
