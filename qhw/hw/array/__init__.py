"""Systolic array: PEs on a grid with weight ROMs, skew/deskew, fold accumulators."""

from .mapping import ArrayMapping
from .systolic import SystolicArray

__all__ = ["ArrayMapping", "SystolicArray"]
