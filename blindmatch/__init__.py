"""blindmatch: privacy-preserving client-side hash matching (prototype)."""

__version__ = "0.1.0"
