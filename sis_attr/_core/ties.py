"""Tie-breaking of backward selection: the lowest feature id, or a seeded random order of each example's features.

Exact BackSelect as published removes, among equal scores, the feature with the lowest id. On a model that
ignores most of its input, every uninformative feature ties, so the features kept to the end are the last ones
(the bottom-right pixels of an image): heatmaps of the kept features then show a border "shortcut" that the
model does not have. With a tie seed, ties go instead to the feature that comes first in a random permutation of
the example's features. The permutation is drawn from the seed and a hash of the example's input values, so it
depends on neither the batch size, the chunking, the shard nor the position of the example in the data set:
the same seed and image always break ties the same way.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import Tensor

from sis_attr._core.problem import SISProblem

_SEED_RANGE = 2**62


def draw_tie_seed(generator: torch.Generator | None) -> int | None:
    """One tie seed drawn from ``generator`` (None: lowest-id tie-breaking)."""
    if generator is None:
        return None
    return int(torch.randint(0, _SEED_RANGE, (1,), generator=generator, device=generator.device))


def tie_keys(problem: SISProblem, examples: Tensor, seed: int | None) -> Tensor | None:
    """``(n, D)`` int64 tie priorities of ``examples`` (lower wins a tie), on the problem's device; None when
    ties go to the lowest feature id.

    Row ``i`` is a random permutation of ``0..D-1`` seeded by ``seed`` and the example's flattened input values.
    """
    if seed is None:
        return None
    d = problem.max_features
    rows = problem.layout.flat_x.index_select(0, examples.to(problem.device)).detach().cpu()
    keys = np.empty((int(rows.shape[0]), d), dtype=np.int64)
    for i, row in enumerate(rows):
        digest = hashlib.blake2b(row.contiguous().view(torch.uint8).numpy().tobytes(), digest_size=8).digest()
        rng = np.random.Generator(np.random.PCG64([seed, int.from_bytes(digest, "little")]))
        keys[i] = rng.permutation(d)
    return torch.from_numpy(keys).to(problem.device)
