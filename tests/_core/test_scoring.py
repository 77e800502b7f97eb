"""Scores: the non-saturating target log-probability the automatic schedule steers by."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sis_attr._core.gradient import score_and_grad
from sis_attr._core.problem import SISProblem
from sis_attr._core.scoring import target_log_prob


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), classes=st.integers(2, 12), scale=st.sampled_from([0.1, 1.0, 5.0]))
def test_target_log_prob_is_log_softmax_where_that_does_not_saturate(seed: int, classes: int, scale: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(6, classes, generator=gen, dtype=torch.float64) * scale
    target = torch.randint(classes, (6,), generator=gen)
    expected = torch.log_softmax(logits, dim=1).gather(1, target[:, None])[:, 0]
    torch.testing.assert_close(target_log_prob(logits, target), expected, rtol=1e-12, atol=1e-14)


def test_target_log_prob_keeps_changing_where_float32_log_softmax_is_exactly_zero() -> None:
    leads = torch.tensor([20.0, 30.0, 40.0, 100.0])
    logits = torch.stack([leads, torch.zeros(4), torch.zeros(4)], dim=1)  # float32
    target = torch.zeros(4, dtype=torch.long)
    assert bool((torch.log_softmax(logits, dim=1)[:, 0] == 0).all())  # what float32 gives
    precise = target_log_prob(logits, target)
    assert precise.dtype == torch.float64
    # log p = -log(1 + 2 exp(-lead)): strictly increasing in the lead, never 0
    torch.testing.assert_close(precise, -torch.log1p(2 * torch.exp(-leads.double())), rtol=1e-12, atol=0)
    assert bool((precise < 0).all()) and bool((precise.diff() > 0).all())


def test_target_log_prob_is_differentiable_and_finite_for_a_wrong_class() -> None:
    logits = torch.tensor([[-800.0, 800.0, 0.0], [3.0, 1.0, 2.0]], requires_grad=True)
    lp = target_log_prob(logits, torch.tensor([0, 0]))
    assert float(lp[0].detach()) == -1600.0  # no overflow to -inf
    lp.sum().backward()
    assert logits.grad is not None and bool(torch.isfinite(logits.grad).all())
    torch.testing.assert_close(logits.grad[1], torch.tensor([1.0, 0.0, 0.0]) - torch.softmax(logits[1].detach(), 0))


def test_gradient_steps_record_the_comparable_score() -> None:
    """A saturated image: the recorded score is float32's 0.0, as exact evaluations record it."""
    weight = torch.zeros(3, 4)
    weight[0] = 10.0  # four features of 1.0: class 0 leads by 40

    def model(z: torch.Tensor) -> torch.Tensor:
        return z.flatten(1) @ weight.t()

    x = torch.ones(2, 4)
    problem = SISProblem.trusted(
        model,
        x,
        target=torch.zeros(2, dtype=torch.long),
        baselines=0.0,
        feature_mask=torch.arange(4)[None],
        batch_size=8,
        caller="test",
    )
    keep = torch.ones(2, 4, dtype=torch.bool)
    keep[1, :2] = False  # the second row leads by 20 only
    v, g = score_and_grad(problem, torch.arange(2), keep)
    assert v.tolist() == [0.0, 0.0]
    assert v.tolist() == problem.evaluate(torch.arange(2), keep).tolist()
    assert g.shape == (2, 4)
