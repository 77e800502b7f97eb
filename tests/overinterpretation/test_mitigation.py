"""Mitigations: input dropout and mean-logit ensembles (Carter et al., 4.6)."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import Tensor, nn

from sis_attr.exceptions import UninformativeBaselineWarning
from sis_attr.overinterpretation import (
    InputDropout,
    MeanLogitEnsemble,
    backward_selection,
    with_input_dropout,
)
from tests.overinterpretation.conftest import Digits


def test_mitigations_are_defined_in_their_module() -> None:
    """One home: sis_attr.overinterpretation.mitigation (re-exported by the package; models only warns)."""
    from sis_attr.overinterpretation import mitigation

    for cls in (InputDropout, MeanLogitEnsemble):
        assert cls.__module__ == "sis_attr.overinterpretation.mitigation"
        assert getattr(mitigation, cls.__name__) is cls
    with pytest.raises(TypeError, match=r"The `model` parameter of with_input_dropout must be a torch\.nn\.Module"):
        with_input_dropout("net", 0.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="The `generator` parameter of InputDropout"):
        InputDropout(0.5, generator=0)  # type: ignore[arg-type]


def test_with_input_dropout_wraps_without_changing_the_model(digits_model: nn.Module) -> None:
    before = copy.deepcopy(digits_model.state_dict())
    wrapped = with_input_dropout(digits_model, 0.5)
    assert isinstance(wrapped, nn.Sequential) and isinstance(wrapped[0], InputDropout)
    assert wrapped[1] is digits_model and not digits_model.training and not wrapped.training
    assert not wrapped[0].training  # eval-mode model -> inactive dropout
    assert all(torch.equal(v, digits_model.state_dict()[k]) for k, v in before.items())
    train_model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    train_wrapped = with_input_dropout(train_model, 0.5, generator=torch.Generator().manual_seed(0))
    assert train_wrapped.training and train_wrapped[0].training and train_model.training
    x = torch.ones(200, 1, 8, 8)
    dropped = train_wrapped[0](x)
    assert 0.4 < float((dropped == 0).double().mean()) < 0.6


def test_input_dropout_is_inactive_in_eval_mode_so_sis_are_deterministic(
    digits: Digits, digits_model: nn.Module
) -> None:
    wrapped = with_input_dropout(digits_model, 0.5)
    images = digits.test_images[:3]
    assert torch.equal(wrapped(images), digits_model(images))
    a = backward_selection(wrapped, images, show_progress=False)
    b = backward_selection(wrapped, images, show_progress=False)
    plain = backward_selection(digits_model, images, show_progress=False)
    assert [r.order.tolist() for r in a.records] == [r.order.tolist() for r in b.records]
    assert [r.order.tolist() for r in a.records] == [r.order.tolist() for r in plain.records]


class _GroupEvidence(nn.Module):
    """Two-class logits ``[0, w * sum of the pixels in its group]``: a detector for one part of the image."""

    def __init__(self, group: Tensor, weight: float) -> None:
        super().__init__()
        self.register_buffer("group", group.float())
        self.weight = weight

    def forward(self, x: Tensor) -> Tensor:
        s = self.weight * (x * self.group).flatten(1).sum(dim=1)
        return torch.stack([torch.zeros_like(s), s], dim=1)


def test_ensemble_sis_are_larger_than_its_members_sis() -> None:
    """Members that see disjoint evidence: the ensemble needs evidence from all of them (paper 4.6)."""
    groups = [torch.zeros(1, 1, 6, 6) for _ in range(3)]
    for i, g in enumerate(groups):
        g[..., 2 * i : 2 * i + 2, :] = 1.0  # member i looks at rows 2i, 2i+1
    members = [_GroupEvidence(g, weight=1.0).eval() for g in groups]
    ensemble = MeanLogitEnsemble(members).eval()
    images = torch.full((2, 1, 6, 6), 1.0)
    threshold = 0.99  # logit log(99) = 4.6: 5 pixels for a member, 14 (= 3 x 4.6) for the mean of 3 members
    member_sizes = [backward_selection(m, images, show_progress=False).sis_sizes(threshold) for m in members]
    ens_sizes = backward_selection(ensemble, images, show_progress=False).sis_sizes(threshold)
    assert all(s.tolist() == [5.0, 5.0] for s in member_sizes)
    assert ens_sizes.tolist() == [14.0, 14.0]


def test_digits_ensemble(digits: Digits, digits_members: list[nn.Module]) -> None:
    """Real (small) case: the ensemble of three DigitsCNNs needs about as many pixels as its members or more."""
    members = digits_members
    ensemble = MeanLogitEnsemble(members).eval()
    images = digits.test_images[:12]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UninformativeBaselineWarning)
        ens = backward_selection(ensemble, images, show_progress=False).sis_sizes(0.99)
        mem = torch.stack([backward_selection(m, images, show_progress=False).sis_sizes(0.99) for m in members])
    mean_members = float(torch.nanmean(mem))
    print("digits SIS size at 0.99: ensemble", float(torch.nanmean(ens)), "members", torch.nanmean(mem, dim=1).tolist())
    assert float(torch.nanmean(ens)) >= 0.9 * mean_members
