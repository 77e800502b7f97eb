"""Mitigations of overinterpretation: ensembles and input dropout (Carter et al., 4.6).

Ensembling (the arithmetic mean of the members' logits) forces the model to combine the independent evidence
of its members, which makes its SIS larger; training with input dropout (pixels randomly set to the baseline)
also increases SIS size. Both modules live in :mod:`sis_attr.models` and are re-exported here.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sis_attr.exceptions import SISTypeError
from sis_attr.models import InputDropout, MeanLogitEnsemble

__all__ = ["InputDropout", "MeanLogitEnsemble", "with_input_dropout"]


def with_input_dropout(
    model: nn.Module,
    p: float,
    *,
    baseline: float | Tensor = 0.0,
    generator: torch.Generator | None = None,
) -> nn.Sequential:
    """Return ``nn.Sequential(InputDropout(p), model)`` without changing ``model``.

    The wrapper shares ``model``'s parameters (train it to train the model; use ``copy.deepcopy(model)`` first
    for an independent copy) and starts in the same mode as ``model``: an eval-mode model gives an eval-mode
    wrapper whose dropout is inactive, so its SIS are deterministic. Call ``.train()`` on the wrapper to train
    with input dropout.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier.
    p : float
        Probability of dropping each pixel (all its channels) in training mode, in ``[0, 1)``.
    baseline : float or Tensor, default 0.0
        Value of dropped pixels (use the SIS baseline).
    generator : torch.Generator, optional
        Source of randomness of the dropout masks.

    Returns
    -------
    torch.nn.Sequential

    Examples
    --------
    >>> import torch
    >>> from sis_attr.testing import TinyConvNet
    >>> net = TinyConvNet(classes=3)
    >>> wrapped = with_input_dropout(net, 0.5)
    >>> wrapped.training, net.training, wrapped[1] is net
    (False, False, True)
    >>> x = torch.rand(2, 3, 4, 4)
    >>> torch.equal(wrapped(x), net(x))
    True
    """
    if not isinstance(model, nn.Module):
        raise SISTypeError(
            f"The `model` parameter of with_input_dropout must be a torch.nn.Module. Got {type(model).__name__} "
            "instead."
        )
    dropout = InputDropout(p, baseline, generator=generator)
    wrapper = nn.Sequential(dropout, model)
    # set the flags directly: wrapper.train()/eval() would recurse into (and change) the user's model
    wrapper.training = model.training
    dropout.training = model.training
    return wrapper
