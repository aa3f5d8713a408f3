"""The active-learning runner: config in, a reproducible run directory out."""

__version__ = "0.1.0"
