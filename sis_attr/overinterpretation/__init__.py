"""Overinterpretation audit of image classifiers (Carter et al., "Overinterpretation reveals image classification
model pathologies").

One module per analysis, each returning a frozen result dataclass with ``to_dict()`` (JSON-serialisable) and,
where a figure makes sense, ``plot(ax=None)``:

* :func:`backward_selection` (:mod:`.selection`): backward selection on every image, stored per image.
* :func:`backselect_subsets`, :func:`random_subsets` (:mod:`.subsets`): 5% pixel-subset datasets.
* :func:`sis_size_statistics`, :func:`mean_sis_size_curve` (:mod:`.sis_size`): SIS size vs correctness
  (Figures 5, 6, S3).
* :func:`confidence_drop` (:mod:`.confidence`): confidence on full images minus on subsets.
* :func:`subset_accuracy` (:mod:`.accuracy`): Table 1 "evaluate on".
* :func:`retraining_gap` (:mod:`.retraining`): Table 1 "train on".
* :func:`transfer_matrix` (:mod:`.transfer`): one model's subsets evaluated by another.
* :func:`location_heatmap` (:mod:`.heatmap`): where the kept pixels are (Figures 2 and 4).
* :func:`with_input_dropout`, :class:`MeanLogitEnsemble`, :class:`InputDropout` (:mod:`.mitigation`).
"""

from __future__ import annotations

from sis_attr.overinterpretation.accuracy import SubsetAccuracy, subset_accuracy
from sis_attr.overinterpretation.confidence import ConfidenceDrop, confidence_drop
from sis_attr.overinterpretation.heatmap import LocationHeatmap, location_heatmap
from sis_attr.overinterpretation.mitigation import InputDropout, MeanLogitEnsemble, with_input_dropout
from sis_attr.overinterpretation.retraining import RetrainingResult, retraining_gap
from sis_attr.overinterpretation.selection import SelectionResult, backward_selection, pixel_feature_mask
from sis_attr.overinterpretation.sis_size import (
    DEFAULT_THRESHOLDS,
    MeanSISSizeCurve,
    SISSizeStatistics,
    ThresholdSISStatistics,
    mean_sis_size_curve,
    sis_size_statistics,
)
from sis_attr.overinterpretation.subsets import PixelSubsetDataset, backselect_subsets, random_subsets, subset_size
from sis_attr.overinterpretation.transfer import TransferResult, transfer_matrix

__all__ = [
    "DEFAULT_THRESHOLDS",
    "ConfidenceDrop",
    "InputDropout",
    "LocationHeatmap",
    "MeanLogitEnsemble",
    "MeanSISSizeCurve",
    "PixelSubsetDataset",
    "RetrainingResult",
    "SISSizeStatistics",
    "SelectionResult",
    "SubsetAccuracy",
    "ThresholdSISStatistics",
    "TransferResult",
    "backselect_subsets",
    "backward_selection",
    "confidence_drop",
    "location_heatmap",
    "mean_sis_size_curve",
    "pixel_feature_mask",
    "random_subsets",
    "retraining_gap",
    "sis_size_statistics",
    "subset_accuracy",
    "subset_size",
    "transfer_matrix",
    "with_input_dropout",
]

# TODO(maintainer): once sis_attr/overinterpretation/audit.py lands, add the two lines below (unguarded) and
# "AuditReport", "audit" to __all__:
# from sis_attr.overinterpretation.audit import AuditReport, audit
