"""Walk-forward calibration of the dynamic model's decay factor and confidence scaling."""

from marginproof.calibration.walkforward import (
    CalibrationResult,
    FoldResult,
    ForecastPanel,
    calibrate_fhs,
    fhs_forecasts,
    fz0_loss,
)

__all__ = [
    "CalibrationResult",
    "FoldResult",
    "ForecastPanel",
    "calibrate_fhs",
    "fhs_forecasts",
    "fz0_loss",
]
