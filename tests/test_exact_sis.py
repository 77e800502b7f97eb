"""SufficientInputSubsets and the functional API: hand-checkable toys, Captum compatibility, real images."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from sis_attr import (
    SISDeviceError,
    SISTypeError,
    SISValueError,
    SISWarning,
    SufficientInputSubsets,
    UninformativeBaselineWarning,
    backselect,
    find_sis,
    sis_collection,
    sufficient_input_subsets,
)
from sis_attr.testing import L2NormScore, LinearScore, SumGridClassifier, TinyConvNet


def identity_score(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return output


# ---------------------------------------------------------------------------------------------- hand-checkable toys
@pytest.mark.parametrize("shape", [(1, 4), (1, 2, 2)])
def test_l2_norm_sis_by_hand(shape: tuple[int, ...]) -> None:
    x = torch.tensor([1.0, 3.0, -4.0, 0.5], dtype=torch.float64).reshape(shape)
    record = backselect(L2NormScore(), x, score_func=identity_score)[0]
    assert record.order.tolist() == [3, 0, 1, 2]  # smallest magnitude first
    expected = [math.sqrt(26.25), math.sqrt(26.0), 5.0, 4.0, 0.0]
    torch.testing.assert_close(record.values, torch.tensor(expected, dtype=torch.float64))
    assert find_sis(record, 4.5).tolist() == [2, 1]
    assert find_sis(record, 3.5).tolist() == [2]
    assert find_sis(record, 5.05).tolist() == [2, 1, 0]
    assert find_sis(record, 5.11).tolist() == [2, 1, 0, 3]
    assert find_sis(record, 6.0) is None
    result = sufficient_input_subsets(L2NormScore(), x, threshold=4.5, score_func=identity_score)
    mask = result[0].keep_mask()
    assert isinstance(mask, torch.Tensor) and mask.shape == x.shape[1:]
    assert mask.flatten().tolist() == [False, True, True, False]


def test_sum_grid_with_row_and_column_grouping() -> None:
    x = torch.tensor([[[2.0, -1.0], [0.5, 1.0]]])
    rows = torch.tensor([[0, 0], [1, 1]])
    cols = torch.tensor([[0, 1], [0, 1]])
    model = SumGridClassifier()
    by_rows = backselect(model, x, target=1, feature_mask=rows)[0]
    assert by_rows.order.tolist() == [0, 1]  # removing row 0 (sum 1) leaves more than removing row 1 (sum 1.5)
    torch.testing.assert_close(by_rows.scores, torch.sigmoid(torch.tensor([2.5, 1.5, 0.0], dtype=torch.float64)))
    assert by_rows.find_sis(0.8).tolist() == [1]
    by_cols = backselect(model, x, target=1, feature_mask=cols)[0]
    assert by_cols.order.tolist() == [1, 0]  # column 1 sums to 0: removing it costs nothing
    assert by_cols.find_sis(0.9).tolist() == [0]
    res = SufficientInputSubsets(model).attribute(x, target=1, feature_mask=cols, threshold=0.9, output="keep_mask")
    torch.testing.assert_close(res, torch.tensor([[[1.0, 0.0], [1.0, 0.0]]]))


def test_linear_score_order_is_ascending_contribution() -> None:
    gen = torch.Generator().manual_seed(0)
    w = torch.randint(-5, 6, (12,), generator=gen).double()
    x = torch.randint(-3, 4, (1, 12), generator=gen).double()
    record = backselect(LinearScore(w), x, score_func=LinearScore.score)[0]
    contribution = (w * x[0]).numpy()
    assert record.order.tolist() == np.argsort(contribution, kind="stable").tolist()
    expected = float(contribution.sum()) - np.concatenate([[0.0], np.cumsum(np.sort(contribution, kind="stable"))])
    torch.testing.assert_close(record.values, torch.tensor(expected))


def test_ties_are_broken_by_the_lowest_feature_id() -> None:
    model = LinearScore(torch.ones(5))
    record = backselect(model, torch.ones(1, 5), score_func=LinearScore.score, batch_size=2)[0]
    assert record.order.tolist() == [0, 1, 2, 3, 4]
    result = sis_collection(model, torch.ones(1, 5), threshold=2.0, score_func=LinearScore.score)
    assert [s.tolist() for s in result[0].collection] == [[4, 3], [2, 1]]


def test_collection_of_several_disjoint_sis() -> None:
    model = LinearScore(torch.tensor([4.0, 1.0, 3.0, 2.0, 0.5, 2.5]))
    result = sis_collection(model, torch.ones(1, 6), threshold=3.0, score_func=LinearScore.score)
    assert [s.tolist() for s in result[0].collection] == [[0], [2], [5, 3]]  # {1, 4} alone score 1.5 < 3
    limited = sis_collection(model, torch.ones(1, 6), threshold=3.0, score_func=LinearScore.score, max_sis=2)
    assert len(limited[0].collection) == 2


def test_no_sis_below_threshold_and_empty_sis_warns() -> None:
    model = SumGridClassifier()
    x = torch.tensor([[[0.1, 0.1], [0.1, 0.1]]])
    result = sufficient_input_subsets(model, x, target=1, threshold=0.9)
    assert result[0].sis is None and not result[0].has_sis and math.isnan(float(result.sizes()[0]))
    assert not result.keep_mask().any()
    with pytest.warns(UninformativeBaselineWarning, match="baseline itself carries evidence for the class"):
        empty = sufficient_input_subsets(model, x, target=1, threshold=0.4, collection=True)
    assert empty[0].sis is not None and empty[0].sis.numel() == 0 and empty[0].collection == ()


def test_sis_at_other_thresholds_reuses_the_record() -> None:
    calls = 0
    inner = TinyConvNet(2, 4, seed=3).double()

    def counting(x: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        return inner(x)

    x = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    result = sufficient_input_subsets(counting, x, threshold=0.2)
    before = calls
    sizes = [result[0].sis_at(t) for t in (0.05, 0.1, 0.2)]
    assert calls == before
    assert sizes[2] is not None and result[0].sis is not None and sizes[2].tolist() == result[0].sis.tolist()


def test_baselines_replace_removed_features() -> None:
    model = LinearScore(torch.tensor([1.0, 1.0, 1.0]))
    x = torch.tensor([[1.0, 2.0, 3.0]])
    record = backselect(model, x, baselines=torch.tensor([10.0, 0.0, 0.0]), score_func=LinearScore.score)[0]
    # removing feature 0 replaces 1 by 10: the score rises, so it goes first
    assert record.order.tolist()[0] == 0
    assert record.values.tolist()[:2] == [6.0, 15.0]


# ---------------------------------------------------------------------------------------------- Captum compatibility
class TwoInputModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.register_buffer("w1", torch.randn(4, 3, generator=gen))
        self.register_buffer("w2", torch.randn(2, 3, generator=gen))

    def forward(self, a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return (a @ self.w1 + b @ self.w2) * scale.unsqueeze(1)


def test_tuple_inputs_with_additional_forward_args() -> None:
    model = TwoInputModel()
    a, b = torch.randn(3, 4), torch.randn(3, 2)
    scale = torch.tensor([1.0, 2.0, 3.0])
    sis = SufficientInputSubsets(model)
    ranks = sis.attribute((a, b), additional_forward_args=(scale,), threshold=0.3)
    assert isinstance(ranks, tuple) and ranks[0].shape == a.shape and ranks[1].shape == b.shape
    for i in range(3):  # the batched call equals one call per example with that example's scale
        single = sis.attribute((a[i : i + 1], b[i : i + 1]), additional_forward_args=(scale[i : i + 1],), threshold=0.3)
        torch.testing.assert_close(single[0][0], ranks[0][i])
        torch.testing.assert_close(single[1][0], ranks[1][i])
    # features span both inputs: ranks are a permutation of 1..6
    assert sorted(torch.cat([ranks[0][0], ranks[1][0]]).tolist()) == [1, 2, 3, 4, 5, 6]
    masks = sis.attribute((a, b), additional_forward_args=(scale,), threshold=0.3, output="keep_mask")
    assert isinstance(masks, tuple) and set(torch.cat([m.flatten() for m in masks]).tolist()) <= {0.0, 1.0}


def test_per_example_and_list_targets() -> None:
    model = TinyConvNet(1, 3, seed=0)
    x = torch.randn(3, 1, 3, 3)
    sis = SufficientInputSubsets(model)
    as_list = sis.explain(x, target=[0, 1, 2], threshold=0.2)
    as_tensor = sis.explain(x, target=torch.tensor([0, 1, 2]), threshold=0.2)
    assert [e.target for e in as_list] == [0, 1, 2]
    for p, q in zip(as_list, as_tensor, strict=True):
        assert torch.equal(p.record.order, q.record.order)
    as_int = sis.explain(x, target=1, threshold=0.2)
    assert [e.target for e in as_int] == [1, 1, 1]
    predicted = sis.explain(x, threshold=0.2)
    assert [e.target for e in predicted] == model(x).argmax(1).tolist()


def test_noise_tunnel_wraps_the_method() -> None:
    from captum.attr import NoiseTunnel

    model = TinyConvNet(1, 3, seed=1)
    x = torch.randn(2, 1, 3, 3)
    nt = NoiseTunnel(SufficientInputSubsets(model))
    attr = nt.attribute(x, nt_type="smoothgrad", nt_samples=3, stdevs=0.1, target=0, threshold=0.3)
    assert attr.shape == x.shape
    assert float(attr.min()) >= 1.0 and float(attr.max()) <= 9.0  # averaged ranks of 9 features


def test_visualize_image_attr_accepts_the_output() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from captum.attr import visualization

    model = TinyConvNet(3, 4, seed=2)
    x = torch.rand(1, 3, 4, 4)
    pixels = torch.arange(16).reshape(1, 1, 4, 4)
    attr = SufficientInputSubsets(model).attribute(x, feature_mask=pixels, threshold=0.2)
    assert torch.equal(attr[0, 0], attr[0, 1])  # channels of a pixel share their rank
    fig, ax = visualization.visualize_image_attr(
        attr[0].permute(1, 2, 0).numpy(),
        x[0].permute(1, 2, 0).numpy(),
        method="blended_heat_map",
        sign="positive",
        use_pyplot=False,
    )
    assert fig is not None and ax is not None


def test_get_name_and_flags() -> None:
    sis = SufficientInputSubsets(TinyConvNet())
    assert sis.get_name() == "Sufficient Input Subsets"
    assert sis.multiplies_by_inputs is False
    assert hasattr(sis.attribute, "__wrapped__")


def test_perturbations_per_eval_is_an_alias_for_the_batch_budget() -> None:
    model = TinyConvNet(1, 3, seed=4).double()
    x = torch.randn(2, 1, 3, 3, dtype=torch.float64)
    sis = SufficientInputSubsets(model)
    a = sis.attribute(x, threshold=0.3, perturbations_per_eval=2)
    b = sis.attribute(x, threshold=0.3, batch_size=1000)
    torch.testing.assert_close(a, b)
    with pytest.raises(SISValueError, match="either `batch_size` or `perturbations_per_eval`"):
        sis.attribute(x, threshold=0.3, perturbations_per_eval=2, batch_size=4)


def test_progress_bar(capsys: pytest.CaptureFixture[str]) -> None:
    model = TinyConvNet(1, 3, seed=4)
    SufficientInputSubsets(model).attribute(torch.randn(1, 1, 3, 3), threshold=0.3, show_progress=True)
    assert "eval" in capsys.readouterr().err


def test_model_is_not_modified() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Dropout(0.5)).train()
    params = [p.detach().clone() for p in model.parameters()]
    grads_before = [p.requires_grad for p in model.parameters()]
    with pytest.warns(SISWarning, match="training mode"):
        sufficient_input_subsets(model, torch.randn(1, 4), threshold=0.1)
    assert model.training  # we warn; we never call .eval() on the user's model
    assert all(torch.equal(a, b) for a, b in zip(params, model.parameters(), strict=True))
    assert [p.requires_grad for p in model.parameters()] == grads_before
    assert all(p.grad is None for p in model.parameters())


# ---------------------------------------------------------------------------------------------- clear errors
def _model() -> nn.Module:
    return TinyConvNet(1, 3, seed=0)


@pytest.mark.parametrize("threshold", [1.5, 0.0, -0.2, float("nan")])
def test_threshold_outside_unit_interval(threshold: float) -> None:
    with pytest.raises(SISValueError, match=r"`threshold` parameter of SufficientInputSubsets.attribute must be in"):
        SufficientInputSubsets(_model()).attribute(torch.randn(1, 1, 3, 3), threshold=threshold)


def test_baseline_not_broadcastable_names_both_shapes() -> None:
    with pytest.raises(SISValueError, match=r"broadcastable to the input shape \(1, 1, 3, 3\).*\(2, 2\)"):
        sufficient_input_subsets(_model(), torch.randn(1, 1, 3, 3), baselines=torch.zeros(2, 2), threshold=0.5)


def test_feature_mask_not_broadcastable() -> None:
    with pytest.raises(SISValueError, match=r"`feature_mask`.*broadcastable.*\(1, 1, 3, 3\)"):
        sufficient_input_subsets(
            _model(), torch.randn(1, 1, 3, 3), feature_mask=torch.zeros(1, 1, 2, 2, dtype=torch.long), threshold=0.5
        )


def test_feature_mask_ids_must_be_contiguous_and_non_negative() -> None:
    gaps = torch.tensor([[0, 0, 2], [2, 3, 3], [3, 3, 3]])
    with pytest.raises(SISValueError, match=r"contiguous group ids 0..n-1.*\[1\] missing"):
        sufficient_input_subsets(_model(), torch.randn(1, 1, 3, 3), feature_mask=gaps, threshold=0.5)
    with pytest.raises(SISValueError, match="non-negative"):
        sufficient_input_subsets(_model(), torch.randn(1, 1, 3, 3), feature_mask=gaps - 1, threshold=0.5)
    with pytest.raises(SISValueError, match="integer tensor"):
        sufficient_input_subsets(_model(), torch.randn(1, 1, 3, 3), feature_mask=gaps.float(), threshold=0.5)


def test_target_out_of_range() -> None:
    with pytest.raises(SISValueError, match=r"class indices in \[0, 2\]. Got values from 0 to 5"):
        sufficient_input_subsets(_model(), torch.randn(2, 1, 3, 3), target=[0, 5], threshold=0.5)
    with pytest.raises(SISValueError, match="one entry per example"):
        sufficient_input_subsets(_model(), torch.randn(2, 1, 3, 3), target=[0, 1, 2], threshold=0.5)
    with pytest.raises(SISTypeError, match="tuple targets"):
        sufficient_input_subsets(_model(), torch.randn(2, 1, 3, 3), target=(0, 1), threshold=0.5)


def test_output_must_be_batch_by_classes() -> None:
    with pytest.raises(SISValueError, match=r"logits of shape \(batch, classes\) = \(1, C\)\. Got shape \(1, 3, 2\)"):
        sufficient_input_subsets(lambda x: torch.zeros(x.shape[0], 3, 2), torch.randn(1, 4), threshold=0.5)
    with pytest.raises(SISValueError, match="single logit"):
        sufficient_input_subsets(lambda x: x.sum(1, keepdim=True), torch.randn(1, 4), threshold=0.5)


@pytest.mark.parametrize(("value", "column"), [(float("nan"), 1), (float("inf"), 1), (float("-inf"), 0)])
def test_non_finite_output_for_masked_inputs_is_reported(value: float, column: int) -> None:
    # NaN or +inf in any logit makes the target's log-probability NaN; -inf in the target's logit makes it -inf
    def bad_when_masked(x: torch.Tensor) -> torch.Tensor:
        out = torch.stack([x.sum(1), -x.sum(1)], dim=1)
        bad = out.clone()
        bad[:, column] = value
        return torch.where((x == 0).any(1, keepdim=True), bad, out)

    with pytest.raises(SISValueError, match="NaN or inf"):
        sufficient_input_subsets(bad_when_masked, torch.ones(1, 3), threshold=0.5)


def test_inputs_on_another_device_than_the_model() -> None:
    model = nn.Linear(4, 3, device="meta")
    with pytest.raises(SISDeviceError, match="is on meta but the inputs are on cpu"):
        sufficient_input_subsets(model, torch.randn(1, 4), threshold=0.5)


def test_empty_batch_and_wrong_input_types() -> None:
    with pytest.raises(SISValueError, match="non-empty batch"):
        sufficient_input_subsets(_model(), torch.randn(0, 1, 3, 3), threshold=0.5)
    with pytest.raises(SISTypeError, match="tensor or a non-empty tuple of tensors"):
        sufficient_input_subsets(_model(), [[1.0, 2.0]], threshold=0.5)  # type: ignore[arg-type]
    with pytest.raises(SISValueError, match="floating-point"):
        sufficient_input_subsets(_model(), torch.ones(1, 1, 3, 3, dtype=torch.long), threshold=0.5)


def test_errors_are_also_builtin_errors() -> None:
    with pytest.raises(ValueError):
        sufficient_input_subsets(_model(), torch.randn(1, 1, 3, 3), threshold=2.0)
    with pytest.raises(TypeError):
        sufficient_input_subsets(_model(), "image", threshold=0.5)  # type: ignore[arg-type]


def test_user_score_threshold_is_not_limited_to_probabilities() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = sufficient_input_subsets(
            LinearScore(torch.tensor([2.0, 3.0])), torch.ones(1, 2), threshold=2.5, score_func=LinearScore.score
        )
    assert result[0].sis is not None and result[0].sis.tolist() == [1]


# ---------------------------------------------------------------------------------------------- real images
def test_pretrained_resnet20_on_real_cifar10_images(shared_data) -> None:  # type: ignore[no-untyped-def]
    from sis_attr.datasets import load_cifar10_batches
    from sis_attr.models import load_pretrained_cifar_resnet

    images, _, _ = load_cifar10_batches(shared_data / "cifar10" / "cifar-10-batches-py-subset", "test", limit=2)
    model = load_pretrained_cifar_resnet(shared_data / "weights" / "resnet20-12fca82f.th")
    block = torch.arange(32) // 4
    superpixels = (block[:, None] * 8 + block[None, :]).reshape(1, 1, 32, 32)  # 4x4-pixel superpixels
    assert int(superpixels.max()) == 63
    sis = SufficientInputSubsets(model)
    result = sis.explain(images, feature_mask=superpixels, threshold=0.9, batch_size=512)
    with torch.no_grad():
        predicted = model(images).argmax(1)
    assert [e.target for e in result] == predicted.tolist()
    found = 0
    for e in result:
        if e.confidence < 0.9:
            assert e.sis is None
            continue
        assert e.sis is not None and 0 < e.sis.numel() < 64
        found += 1
        masked = e.masked_input()
        assert isinstance(masked, torch.Tensor)
        with torch.no_grad():
            p = torch.softmax(model(masked.unsqueeze(0)), 1)[0, e.target]
        assert float(p) >= 0.9
        keep = e.keep_mask()
        assert isinstance(keep, torch.Tensor) and int(keep.sum()) == 16 * 3 * e.sis.numel()
    assert found >= 1
    ranks = sis.attribute(images, feature_mask=superpixels, threshold=0.9, batch_size=512)
    assert ranks.shape == images.shape and float(ranks.max()) == 64.0


# ---------------------------------------------------------------------------------------- one pipeline, two doors
def test_class_and_function_share_one_pipeline_and_its_defaults() -> None:
    net = TinyConvNet(in_channels=1, classes=3, seed=2)
    x = torch.randn(3, 1, 3, 3, generator=torch.Generator().manual_seed(7))
    a = SufficientInputSubsets(net).explain(x, threshold=0.6)
    b = sufficient_input_subsets(net, x, threshold=0.6)
    c = sufficient_input_subsets(net, x, threshold=0.6, perturbations_per_eval=2)  # Captum's name, now here too
    for ea, eb, ec in zip(a, b, c, strict=True):
        assert ea.record.order.tolist() == eb.record.order.tolist() == ec.record.order.tolist()
        assert ea.size == eb.size == ec.size


def test_rank_map_needs_no_threshold_but_the_keep_mask_does() -> None:
    net = TinyConvNet(in_channels=1, classes=3, seed=2)
    x = torch.randn(2, 1, 3, 3, generator=torch.Generator().manual_seed(7))
    sis = SufficientInputSubsets(net)
    ranks = sis.attribute(x)
    assert torch.equal(ranks, sis.attribute(x, threshold=0.9))  # the threshold does not change the ranks
    with pytest.raises(
        SISValueError,
        match=r'threshold` parameter of SufficientInputSubsets.attribute must be a number with output="keep_mask"',
    ):
        sis.attribute(x, output="keep_mask")


def test_flags_are_validated_not_coerced() -> None:
    net = TinyConvNet(in_channels=1, classes=3, seed=2)
    x = torch.randn(1, 1, 3, 3)
    with pytest.raises(
        SISTypeError, match=r"The `collection` parameter of SufficientInputSubsets.explain must be a bool. Got str"
    ):
        SufficientInputSubsets(net).explain(x, threshold=0.5, collection="no")  # type: ignore[arg-type]
    with pytest.raises(SISTypeError, match=r"The `show_progress` parameter of sufficient_input_subsets must be a bool"):
        sufficient_input_subsets(net, x, threshold=0.5, show_progress="yes")  # type: ignore[arg-type]
