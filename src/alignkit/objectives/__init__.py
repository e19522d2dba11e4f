"""Training objectives: pure losses (`losses`) and the method registry (`registry`)."""

from alignkit.objectives.base import ObjectiveBatch, ObjectiveConfig, SeqLogps
from alignkit.objectives.registry import METHODS, compute_loss, get_method

__all__ = [
    "METHODS",
    "ObjectiveBatch",
    "ObjectiveConfig",
    "SeqLogps",
    "compute_loss",
    "get_method",
]
