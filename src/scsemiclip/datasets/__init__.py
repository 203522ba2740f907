"""Real public data (cached, sha256-checked downloads) and a weakly paired simulator."""

__all__: list[str] = []
