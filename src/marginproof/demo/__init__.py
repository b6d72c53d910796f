"""Shipped sample data built from ``data/``: the demo book and market (``book``), the demo's
real-time stage (``engine``), example proof epochs (``proofs``) and seeded synthetic universes
and books for benchmarks and tests (``synthetic``)."""

# the shipped chain the demo uses (here, not in ``book``: the CLI reads it without the models)
DEMO_DATE = "2022-04-15"
