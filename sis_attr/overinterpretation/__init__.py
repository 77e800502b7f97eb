"""Overinterpretation audit of image classifiers (Carter et al., "Overinterpretation reveals image classification
model pathologies").

One module per analysis, each returning a frozen result dataclass with ``to_dict()`` (JSON-serialisable) and,
where a figure makes sense, ``plot(ax=None)``:

* :func:`backward_selection` (:mod:`.selection`): backward selection on every image, stored per image;
  :func:`pixel_feature_mask` and :func:`block_feature_mask` group pixels into features.
* :func:`backselect_subsets`, :func:`random_subsets` (:mod:`.subsets`): 5% pixel-subset datasets.
* :func:`sis_size_statistics`, :func:`mean_sis_size_curve` (:mod:`.sis_size`): SIS size vs correctness
  (Figures 5, 6, S3).
* :func:`confidence_drop` (:mod:`.confidence`): confidence on full images minus on subsets.
* :func:`subset_accuracy` (:mod:`.accuracy`): Table 1 "evaluate on".
* :func:`retraining_gap` (:mod:`.retraining`): Table 1 "train on".
* :func:`transfer_matrix` (:mod:`.transfer`): one model's subsets evaluated by another.
* :func:`make_study`, :func:`score_study` (:mod:`.study`): the human classification study (Section 3.4,
  Table 2): a static page for participants, a key kept apart, and the scores of their answer files.
* :func:`location_heatmap` (:mod:`.heatmap`): where the kept pixels are (Figures 2 and 4).
* :func:`mask_shape_leakage` (:mod:`.leakage`): does the pattern of kept positions carry the class? Accuracy
  with each subset's content swapped for another image's or erased to one colour (the critics' control).
* :func:`smoothed_sis` (:mod:`.smoothing`): confidence on the SIS, on the SIS dilated by one pixel and on
  same-size random sets (the critics' control).
* :func:`with_input_dropout`, :class:`MeanLogitEnsemble`, :class:`InputDropout` (:mod:`.mitigation`).

:func:`audit` runs the single-model analyses in one call and returns an :class:`AuditReport` (plain-text
summary, JSON, PNG figures and an HTML page); :func:`save_comparison` puts several models side by side.
"""

from __future__ import annotations

from sis_attr._core.feature_masks import block_feature_mask, pixel_feature_mask
from sis_attr.overinterpretation.accuracy import SubsetAccuracy, subset_accuracy
from sis_attr.overinterpretation.confidence import ConfidenceDrop, confidence_drop
from sis_attr.overinterpretation.heatmap import LocationHeatmap, location_heatmap
from sis_attr.overinterpretation.leakage import MaskShapeLeakage, mask_shape_leakage
from sis_attr.overinterpretation.mitigation import InputDropout, MeanLogitEnsemble, with_input_dropout
from sis_attr.overinterpretation.pipeline import audit
from sis_attr.overinterpretation.report import (
    AuditReport,
    ReportWriteError,
    SISExamples,
    check_output_directory,
    compare_summary,
    save_comparison,
)
from sis_attr.overinterpretation.retraining import RetrainingResult, retraining_gap
from sis_attr.overinterpretation.selection import SelectionResult, backward_selection
from sis_attr.overinterpretation.sis_size import (
    DEFAULT_THRESHOLDS,
    MeanSISSizeCurve,
    SISSizeStatistics,
    ThresholdSISStatistics,
    mean_sis_size_curve,
    sis_size_statistics,
)
from sis_attr.overinterpretation.smoothing import SmoothedSIS, smoothed_sis
from sis_attr.overinterpretation.study import Study, StudyScore, make_study, score_study
from sis_attr.overinterpretation.subsets import PixelSubsetDataset, backselect_subsets, random_subsets, subset_size
from sis_attr.overinterpretation.transfer import TransferResult, transfer_matrix

__all__ = [
    "DEFAULT_THRESHOLDS",
    "AuditReport",
    "ConfidenceDrop",
    "InputDropout",
    "LocationHeatmap",
    "MaskShapeLeakage",
    "MeanLogitEnsemble",
    "MeanSISSizeCurve",
    "PixelSubsetDataset",
    "ReportWriteError",
    "RetrainingResult",
    "SISExamples",
    "SISSizeStatistics",
    "SelectionResult",
    "SmoothedSIS",
    "Study",
    "StudyScore",
    "SubsetAccuracy",
    "ThresholdSISStatistics",
    "TransferResult",
    "audit",
    "backselect_subsets",
    "backward_selection",
    "block_feature_mask",
    "check_output_directory",
    "compare_summary",
    "confidence_drop",
    "location_heatmap",
    "make_study",
    "mask_shape_leakage",
    "mean_sis_size_curve",
    "pixel_feature_mask",
    "random_subsets",
    "retraining_gap",
    "save_comparison",
    "score_study",
    "sis_size_statistics",
    "smoothed_sis",
    "subset_accuracy",
    "subset_size",
    "transfer_matrix",
    "with_input_dropout",
]
