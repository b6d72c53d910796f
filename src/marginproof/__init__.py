"""marginproof: dynamic, provable margin engine for crypto derivatives."""

__version__ = "0.1.0"
