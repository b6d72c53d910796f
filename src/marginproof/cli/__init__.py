"""Command-line interface (``marginproof``)."""
