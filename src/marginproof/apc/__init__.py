"""Anti-procyclicality tools (EMIR RTS 153/2013 Art. 28(1), ESMA 2018 guidelines) and metrics."""

from marginproof.apc.metrics import ProcyclicalityMetrics, apc_report, procyclicality_metrics
from marginproof.apc.tools import (
    apply_floor,
    buffer_static,
    buffer_with_release,
    floor_var_long,
    floor_var_short,
    sigma_10y,
    stressed_weight,
)

__all__ = [
    "ProcyclicalityMetrics",
    "apc_report",
    "apply_floor",
    "buffer_static",
    "buffer_with_release",
    "floor_var_long",
    "floor_var_short",
    "procyclicality_metrics",
    "sigma_10y",
    "stressed_weight",
]
