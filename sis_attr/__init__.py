"""sis_attr: Sufficient Input Subsets for PyTorch models, as Captum attribution methods.

Find the smallest sets of input features that alone keep a classifier confident, and audit models for
overinterpretation (Carter et al., "Overinterpretation reveals image classification model pathologies").
"""

from __future__ import annotations

from sis_attr._core.results import BackSelectRecord, SISExplanation, SISResult
from sis_attr.exact_sis import SufficientInputSubsets
from sis_attr.exceptions import (
    SISDeviceError,
    SISError,
    SISTypeError,
    SISValueError,
    SISWarning,
    UninformativeBaselineWarning,
)
from sis_attr.functional import (
    backselect,
    batched_gradient_sis,
    find_sis,
    gradient_backselect,
    sis_collection,
    sufficient_input_subsets,
)
from sis_attr.gradient_sis import AdaptiveK, AutoK, BatchedGradientSIS

__version__ = "0.1.0.dev0"
"""Version of sis_attr (PEP 440)."""

__all__ = [
    "AdaptiveK",
    "AutoK",
    "BackSelectRecord",
    "BatchedGradientSIS",
    "SISDeviceError",
    "SISError",
    "SISExplanation",
    "SISResult",
    "SISTypeError",
    "SISValueError",
    "SISWarning",
    "SufficientInputSubsets",
    "UninformativeBaselineWarning",
    "__version__",
    "backselect",
    "batched_gradient_sis",
    "find_sis",
    "gradient_backselect",
    "sis_collection",
    "sufficient_input_subsets",
]
