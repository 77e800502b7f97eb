"""The human classification study of Carter et al. (Section 3.4, Table 2), as a kit anyone can run.

:func:`make_study` samples images a model classifies correctly and confidently, makes their backward-selection
subsets (5%, 30%, 50% of the pixels by default, plus the full images as a control) and writes one static page for
participants (no server, no network) and a key file kept apart from it. People answer in their browser and send
back the JSON file the page downloads; :func:`score_study` scores those files against the key: accuracy per
subset size (mean +- std across participants), per class, confusion matrices, the R^2 of subset size with human
accuracy, and the model's accuracy on the same images.

Layout::

    study/index.html      the only file participants get (images embedded, opaque ids only)
    study-key.json        the key: which image, class and model prediction each id is (keep it private)
"""

from __future__ import annotations

from sis_attr.overinterpretation.study._make import Study, make_study
from sis_attr.overinterpretation.study._score import StudyScore, score_study

__all__ = ["Study", "StudyScore", "make_study", "score_study"]
