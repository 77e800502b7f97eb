"""Mitigations of overinterpretation (Carter et al., Section 4.6): ensembles and input dropout.

* :class:`MeanLogitEnsemble`: an ensemble whose output is the arithmetic mean of its members' logits
  (Sections 3.2 and 4.6). Combining the independent evidence of several models makes SIS larger.
* :class:`InputDropout` and :func:`with_input_dropout`: training with whole pixels randomly set to the
  baseline (the input dropout of the paper's later version) also increases SIS size.

Both modules are plain :class:`torch.nn.Module` objects without parameters of their own (torch only).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from sis_attr._core.validation import format_generator, format_model
from sis_attr.exceptions import SISTypeError, SISValueError

__all__ = ["InputDropout", "MeanLogitEnsemble", "with_input_dropout"]


class InputDropout(nn.Module):
    """Drop whole input pixels during training by setting them to a baseline value.

    In training mode each pixel (all channels of one spatial position, as SIS masks them) of each example is
    replaced by ``baseline`` with probability ``p``, independently. Unlike :class:`torch.nn.Dropout` the kept
    values are *not* rescaled: the model learns to classify partially masked images, as seen by SIS. In eval
    mode the layer is the identity (it returns its input). Put it in front of a model with
    ``nn.Sequential(InputDropout(p), model)``; it has no parameters and never touches other modules.

    Parameters
    ----------
    p : float, default 0.5
        Drop probability, in ``[0, 1)``.
    baseline : float or torch.Tensor, default 0.0
        Value of dropped pixels: a number, or a tensor broadcastable to ``(C, H, W)`` (such as a mean image).
    generator : torch.Generator, optional
        Source of randomness (for reproducible masks); the global generator otherwise.

    Notes
    -----
    Inputs are ``(N, C, *spatial)`` (one mask per example and spatial position) or ``(N, F)`` (one mask per
    feature).

    Examples
    --------
    >>> drop = InputDropout(0.5, generator=torch.Generator().manual_seed(0))
    >>> x = torch.ones(1, 3, 4, 4)
    >>> y = drop(x)
    >>> bool(((y == 0).all(dim=1) | (y == 1).all(dim=1)).all())  # whole pixels are dropped
    True
    >>> torch.equal(drop.eval()(x), x)
    True
    """

    baseline: Tensor

    def __init__(self, p: float = 0.5, baseline: float | Tensor = 0.0, *, generator: torch.Generator | None = None):
        super().__init__()
        caller = "InputDropout"
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= float(p) < 1.0:
            raise SISValueError(f"The `p` parameter of {caller} must be a number in [0, 1). Got {p!r} instead.")
        if not isinstance(baseline, (int, float, Tensor)) or isinstance(baseline, bool):
            raise SISTypeError(
                f"The `baseline` parameter of {caller} must be a number or a tensor. "
                f"Got {type(baseline).__name__} instead."
            )
        self.p = float(p)
        self.generator = format_generator(generator, caller)
        # Not persistent, so that wrapping a model in nn.Sequential(InputDropout(p), model) adds no state-dict key.
        self.register_buffer(
            "baseline", torch.as_tensor(baseline, dtype=torch.float32).detach().clone(), persistent=False
        )

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.dim() < 2:
            raise SISValueError(
                f"InputDropout expects inputs of shape (N, C, *spatial) or (N, F). Got shape {tuple(x.shape)} instead."
            )
        mask_shape = (x.shape[0], x.shape[1]) if x.dim() == 2 else (x.shape[0], 1, *x.shape[2:])
        gen_device = self.generator.device if self.generator is not None else x.device
        uniform = torch.rand(mask_shape, generator=self.generator, device=gen_device)
        drop = (uniform < self.p).to(x.device)
        return torch.where(drop, self.baseline.to(device=x.device, dtype=x.dtype), x)


class MeanLogitEnsemble(nn.Module):
    """An ensemble whose output is the arithmetic mean of its members' logits (Carter et al., Section 3.2).

    The members are registered as submodules (``.members``), so ``.to(device)`` moves them, but building the
    ensemble changes neither their parameters nor their modes; the ensemble's own ``training`` flag starts as
    ``True`` only if some member is in training mode. (As for any module, ``ensemble.eval()`` sets every
    member to eval mode.)

    Parameters
    ----------
    models : iterable of torch.nn.Module
        At least one model; all must return outputs of the same shape.

    Examples
    --------
    >>> from sis_attr.models import DigitsCNN
    >>> torch.manual_seed(0) and None
    >>> a, b = DigitsCNN().eval(), DigitsCNN().eval()
    >>> ens = MeanLogitEnsemble([a, b])
    >>> x = torch.rand(4, 1, 8, 8)
    >>> torch.allclose(ens(x), (a(x) + b(x)) / 2), ens.training
    (True, False)
    """

    def __init__(self, models: Iterable[nn.Module]) -> None:
        super().__init__()
        caller = "MeanLogitEnsemble"
        if isinstance(models, nn.Module) and not isinstance(models, (nn.ModuleList, nn.Sequential)):
            raise SISTypeError(
                f"The `models` parameter of {caller} must be an iterable of torch.nn.Module. Got a single "
                f"{type(models).__name__} instead; wrap it in a list."
            )
        members = list(models)
        if not members:
            raise SISValueError(f"The `models` parameter of {caller} must hold at least one model. Got none instead.")
        for i, m in enumerate(members):
            if not isinstance(m, nn.Module):
                raise SISTypeError(
                    f"The `models` parameter of {caller} must hold torch.nn.Module objects. "
                    f"Got {type(m).__name__} at position {i} instead."
                )
        self.members = nn.ModuleList(members)
        self.training = any(m.training for m in members)

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        outputs = [m(*args, **kwargs) for m in self.members]
        shapes = {tuple(o.shape) for o in outputs}
        if len(shapes) != 1:
            raise SISValueError(
                f"MeanLogitEnsemble needs members with outputs of one shape. Got shapes "
                f"{[tuple(o.shape) for o in outputs]} instead."
            )
        return torch.stack(outputs).mean(dim=0)


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
    format_model(model, "with_input_dropout")
    dropout = InputDropout(p, baseline, generator=generator)
    wrapper = nn.Sequential(dropout, model)
    # set the flags directly: wrapper.train()/eval() would recurse into (and change) the user's model
    wrapper.training = model.training
    dropout.training = model.training
    return wrapper
