"""Tests for :mod:`sis_attr.models`: pretrained accuracy, an independent re-statement of the ResNet, and the
properties of input dropout and the logit ensemble."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from sis_attr.datasets import (
    CIFAR10_MEAN_STD_AKAMASTER,
    SHARED_DATA_ENV_VAR,
    load_cifar10_batches,
    normalize,
)
from sis_attr.exceptions import CheckpointNotFoundError, SISError, SISTypeError, SISValueError
from sis_attr.models import (
    CifarResNet,
    DigitsCNN,
    NormalizedModel,
    cifar_resnet,
    load_pretrained_cifar_resnet,
)
from sis_attr.overinterpretation.mitigation import InputDropout, MeanLogitEnsemble
from tests.conftest import shared_path

_shared = shared_path


@pytest.fixture(scope="module")
def cifar_test_subset() -> tuple[Tensor, Tensor]:
    images, labels, _ = load_cifar10_batches(_shared("cifar10", "cifar-10-batches-py-subset"), "test")
    return images, labels


def _correct(model: nn.Module, images: Tensor, labels: Tensor) -> int:
    with torch.no_grad():
        return int((model(images).argmax(dim=1) == labels).sum())


# --------------------------------------------------------------------------------------------------------------
# Pretrained checkpoints (real data)
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.real_data
def test_pretrained_resnet20_gives_776_of_846(cifar_test_subset: tuple[Tensor, Tensor]) -> None:
    images, labels = cifar_test_subset
    path = _shared("weights", "resnet20-12fca82f.th")
    model = load_pretrained_cifar_resnet(path, check_hash=True)
    assert isinstance(model, NormalizedModel) and not model.training and not model.model.training
    assert _correct(model, images, labels) == 776  # 91.73%, as in ../shared/data/README.md

    # The bare ResNet expects normalised inputs and gives the same logits there.
    bare = load_pretrained_cifar_resnet(path, with_normalization=False)
    assert isinstance(bare, CifarResNet) and bare.depth == 20 and not bare.training
    x = images[:64]
    with torch.no_grad():
        assert torch.allclose(bare(normalize(x, *CIFAR10_MEAN_STD_AKAMASTER)), model(x), atol=1e-5)


@pytest.mark.real_data
def test_pretrained_resnet32_loads_by_depth(cifar_test_subset: tuple[Tensor, Tensor]) -> None:
    _shared("weights", "resnet32-d509ac18.th")
    model = load_pretrained_cifar_resnet(32, check_hash=True)
    assert isinstance(model, NormalizedModel) and isinstance(model.model, CifarResNet) and model.model.depth == 32
    images, labels = cifar_test_subset
    assert _correct(model, images[:200], labels[:200]) >= 180  # 93.03% on all 846 (README)


@pytest.mark.real_data
def test_checkpoint_keys_are_exactly_the_module_names() -> None:
    raw = torch.load(_shared("weights", "resnet20-12fca82f.th"), map_location="cpu", weights_only=True)
    keys = {k.removeprefix("module.") for k in raw["state_dict"]}
    assert len(keys) == 97  # no num_batches_tracked: BatchNorm fills it in when loading (strictly)
    assert keys == {k for k in cifar_resnet(20).state_dict() if not k.endswith("num_batches_tracked")}


@pytest.mark.real_data
def test_hash_check_catches_a_renamed_file(tmp_path: Path) -> None:
    fake = tmp_path / "resnet20-00000000.th"
    shutil.copy(_shared("weights", "resnet20-12fca82f.th"), fake)
    with pytest.raises(SISValueError, match="sha256"):
        load_pretrained_cifar_resnet(fake, check_hash=True)
    assert isinstance(load_pretrained_cifar_resnet(fake), NormalizedModel)  # no check by default


# --------------------------------------------------------------------------------------------------------------
# CIFAR ResNet without real data
# --------------------------------------------------------------------------------------------------------------


def _reference_resnet_forward(state: dict[str, Tensor], x: Tensor, n: int) -> Tensor:
    """Independent functional re-statement of akamaster's ResNet (eval mode), from the state dict alone."""

    def bn(h: Tensor, name: str) -> Tensor:
        return F.batch_norm(
            h, state[f"{name}.running_mean"], state[f"{name}.running_var"], state[f"{name}.weight"],
            state[f"{name}.bias"], training=False, eps=1e-5,
        )  # fmt: skip

    out = F.relu(bn(F.conv2d(x, state["conv1.weight"], padding=1), "bn1"))
    in_planes = 16
    for layer, planes in ((1, 16), (2, 32), (3, 64)):
        for i in range(n):
            stride = 2 if (layer > 1 and i == 0) else 1
            p = f"layer{layer}.{i}"
            h = F.relu(bn(F.conv2d(out, state[f"{p}.conv1.weight"], stride=stride, padding=1), f"{p}.bn1"))
            h = bn(F.conv2d(h, state[f"{p}.conv2.weight"], padding=1), f"{p}.bn2")
            if stride != 1 or in_planes != planes:
                short = F.pad(out[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4), "constant", 0)
            else:
                short = out
            out = F.relu(h + short)
            in_planes = planes
    out = F.avg_pool2d(out, out.size(3)).view(out.size(0), -1)
    return F.linear(out, state["linear.weight"], state["linear.bias"])


@pytest.mark.parametrize("depth", [8, 14])
def test_resnet_matches_an_independent_restatement(depth: int) -> None:
    torch.manual_seed(0)
    model = cifar_resnet(depth)
    # Non-trivial batch-norm statistics, as after training.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d) and m.running_mean is not None and m.running_var is not None:
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    model.eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = _reference_resnet_forward(model.state_dict(), x, (depth - 2) // 6)
        assert torch.allclose(model(x), expected, atol=1e-4)


@pytest.mark.parametrize(("depth", "n_params"), [(20, 269_722), (32, 464_154), (44, 658_586), (56, 853_018)])
def test_resnet_parameter_counts(depth: int, n_params: int) -> None:
    model = cifar_resnet(depth)
    assert sum(p.numel() for p in model.parameters()) == n_params  # 0.27M, 0.46M, 0.66M, 0.85M (He et al.)
    assert model.depth == depth and len(model.layer3) == (depth - 2) // 6


@pytest.mark.parametrize("depth", [0, 7, 21, 20.0, True])
def test_resnet_rejects_bad_depths(depth: object) -> None:
    with pytest.raises(SISValueError, match="The `depth` parameter of cifar_resnet must be an integer of the form 6n"):
        cifar_resnet(depth)  # type: ignore[arg-type]


@pytest.mark.parametrize("wrapped", [True, False])
def test_checkpoint_round_trip(tmp_path: Path, wrapped: bool) -> None:
    torch.manual_seed(1)
    net = cifar_resnet(8, num_classes=4).eval()
    state = {"module." + k: v for k, v in net.state_dict().items()}
    torch.save({"best_prec1": 50.0, "state_dict": state} if wrapped else state, tmp_path / "ckpt.th")
    loaded = load_pretrained_cifar_resnet(tmp_path / "ckpt.th", with_normalization=False)
    assert isinstance(loaded, CifarResNet) and loaded.depth == 8 and not loaded.training
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    # By depth, from a weights directory.
    (tmp_path / "resnet8-abc.th").write_bytes((tmp_path / "ckpt.th").read_bytes())
    by_depth = load_pretrained_cifar_resnet(8, weights_dir=tmp_path)
    with torch.no_grad():
        assert torch.equal(by_depth(x), net(normalize(x, *CIFAR10_MEAN_STD_AKAMASTER)))


def test_pretrained_loader_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CheckpointNotFoundError, match="does not exist") as info:
        load_pretrained_cifar_resnet(tmp_path / "none.th")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, SISError)
    with pytest.raises(CheckpointNotFoundError, match="resnet20-"):
        load_pretrained_cifar_resnet(20, weights_dir=tmp_path)
    # a depth without weights_dir: only $SIS_ATTR_SHARED_DATA is consulted, and the message says so
    monkeypatch.setenv(SHARED_DATA_ENV_VAR, str(tmp_path / "no-such-dir"))
    with pytest.raises(CheckpointNotFoundError, match=r"\$SIS_ATTR_SHARED_DATA"):
        load_pretrained_cifar_resnet(20)
    monkeypatch.delenv(SHARED_DATA_ENV_VAR)
    with pytest.raises(CheckpointNotFoundError, match="weights_dir"):
        load_pretrained_cifar_resnet(20)
    # a depth that is not 6n+2, and a file named for one depth that holds another
    with pytest.raises(SISValueError, match="6n\\+2"):
        load_pretrained_cifar_resnet(21, weights_dir=tmp_path)
    torch.save({"state_dict": cifar_resnet(8).state_dict()}, tmp_path / "resnet14-0000.th")
    with pytest.raises(SISValueError, match=r"asked for depth 14.*holds a ResNet8"):
        load_pretrained_cifar_resnet(14, weights_dir=tmp_path)
    assert load_pretrained_cifar_resnet(tmp_path / "resnet14-0000.th").model.depth == 8  # a path: as it is
    (tmp_path / "junk.th").write_bytes(b"junk")
    with pytest.raises(SISValueError, match="could not read"):
        load_pretrained_cifar_resnet(tmp_path / "junk.th")
    torch.save({"state_dict": DigitsCNN().state_dict()}, tmp_path / "digits.th")
    with pytest.raises(SISValueError, match="CIFAR ResNet state dict"):
        load_pretrained_cifar_resnet(tmp_path / "digits.th")
    state = cifar_resnet(8).state_dict()
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.th")
    with pytest.raises(SISValueError, match="does not match"):
        load_pretrained_cifar_resnet(tmp_path / "extra.th")
    with pytest.raises(SISTypeError):
        load_pretrained_cifar_resnet(3.5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------------------
# NormalizedModel, small CNNs
# --------------------------------------------------------------------------------------------------------------


def test_normalized_model() -> None:
    torch.manual_seed(0)
    inner = cifar_resnet(8).eval()
    model = NormalizedModel(inner, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    assert not model.training and not inner.training
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        expected = inner(
            (x - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
        )
        assert torch.allclose(model(x), expected, atol=1e-6)
    assert set(model.state_dict()) == {"model." + k for k in inner.state_dict()}
    # Buffers follow .to(); float64 inputs work.
    model64 = copy.deepcopy(model).double()
    assert model64(x.double()).dtype == torch.float64
    # Construction leaves a training-mode model in training mode.
    train_inner = cifar_resnet(8)
    assert NormalizedModel(train_inner, (0, 0, 0), (1, 1, 1)).training and train_inner.training
    with pytest.raises(SISValueError, match=r"\(N, 3, H, W\)"):
        model(torch.rand(1, 1, 32, 32))
    with pytest.raises(SISValueError, match="positive"):
        NormalizedModel(inner, (0, 0, 0), (1, 0, 1))
    with pytest.raises(SISValueError, match="same length"):
        NormalizedModel(inner, (0, 0), (1, 1, 1))


def test_small_cnns() -> None:
    assert DigitsCNN().eval()(torch.rand(5, 1, 8, 8)).shape == (5, 10)
    assert DigitsCNN(num_classes=3).eval()(torch.rand(2, 1, 8, 8)).shape == (2, 3)
    assert all(not getattr(m, "inplace", False) for m in DigitsCNN().modules())
    with pytest.raises(SISValueError, match="The `num_classes` parameter of DigitsCNN must be a positive integer"):
        DigitsCNN(num_classes=0)


# --------------------------------------------------------------------------------------------------------------
# InputDropout
# --------------------------------------------------------------------------------------------------------------


def test_input_dropout_is_the_identity_in_eval_mode() -> None:
    drop = InputDropout(0.9).eval()
    x = torch.rand(4, 3, 8, 8)
    assert drop(x) is x
    assert InputDropout(0.0)(x) is x  # p = 0 in training mode as well


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_input_dropout_drops_whole_pixels_at_rate_p(p: float) -> None:
    drop = InputDropout(p, generator=torch.Generator().manual_seed(0))
    assert drop.training
    x = torch.rand(64, 3, 32, 32) + 0.5  # never 0, so dropped values are recognisable
    y = drop(x)
    dropped = y == 0
    kept = y == x
    assert bool((dropped | kept).all())  # no rescaling of kept values
    pixel_dropped = dropped.all(dim=1)
    assert torch.equal(dropped, pixel_dropped[:, None].expand_as(dropped))  # all channels together
    rate = float(pixel_dropped.float().mean())
    assert abs(rate - p) < 0.01  # 65 536 pixels: the standard error is below 0.002
    assert not torch.equal(pixel_dropped[0], pixel_dropped[1])  # masks differ between examples


def test_input_dropout_baseline_generator_and_gradients() -> None:
    baseline = torch.rand(3, 4, 4)
    x = torch.rand(8, 3, 4, 4, requires_grad=True)
    drop_a = InputDropout(0.5, baseline, generator=torch.Generator().manual_seed(3))
    drop_b = InputDropout(0.5, baseline, generator=torch.Generator().manual_seed(3))
    y = drop_a(x)
    assert torch.equal(y, drop_b(x))  # same seed, same mask
    mask = (y == x).all(dim=1, keepdim=True)
    assert torch.equal(y, torch.where(mask, x, baseline.expand_as(x)))
    y.sum().backward()
    assert x.grad is not None and torch.equal(x.grad, mask.expand_as(x).float())
    flat = InputDropout(0.5, generator=torch.Generator().manual_seed(0))(torch.ones(4, 100))
    assert set(flat.unique().tolist()) == {0.0, 1.0}  # (N, F) inputs: per feature


@settings(max_examples=25, deadline=None)
@given(
    p=st.floats(0.0, 0.99),
    n=st.integers(1, 4),
    c=st.integers(1, 4),
    h=st.integers(1, 6),
    seed=st.integers(0, 1000),
)
def test_input_dropout_property(p: float, n: int, c: int, h: int, seed: int) -> None:
    x = torch.rand(n, c, h, h + 1) + 1.0
    y = InputDropout(p, baseline=-1.0, generator=torch.Generator().manual_seed(seed))(x)
    dropped = y == -1.0
    assert bool((dropped | (y == x)).all())
    assert torch.equal(dropped, dropped[:, :1].expand_as(dropped))


def test_input_dropout_leaves_a_model_alone() -> None:
    model = DigitsCNN().eval()
    before = copy.deepcopy(model.state_dict())
    net = nn.Sequential(InputDropout(0.5), model)
    assert not model.training  # building the Sequential changes nothing
    assert set(net.state_dict()) == {"1." + k for k in before}  # no extra state
    net(torch.rand(4, 1, 8, 8))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_input_dropout_rejects_bad_arguments() -> None:
    for p in (-0.1, 1.0, 2, "0.5", True):
        with pytest.raises(SISValueError, match=r"The `p` parameter of InputDropout must be a number in \[0, 1\)"):
            InputDropout(p)  # type: ignore[arg-type]
    with pytest.raises(SISTypeError, match="baseline"):
        InputDropout(0.5, baseline="zero")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------------------
# MeanLogitEnsemble
# --------------------------------------------------------------------------------------------------------------


def test_ensemble_is_the_mean_of_logits() -> None:
    torch.manual_seed(0)
    members = [DigitsCNN().eval() for _ in range(3)]
    ensemble = MeanLogitEnsemble(members)
    x = torch.rand(6, 1, 8, 8)
    with torch.no_grad():
        logits = [m(x) for m in members]
        out = ensemble(x)
    assert torch.allclose(out, (logits[0] + logits[1] + logits[2]) / 3, atol=1e-6)
    # The mean of logits, not of probabilities.
    assert not torch.allclose(out.softmax(1), sum(lg.softmax(1) for lg in logits) / 3, atol=1e-4)
    single = MeanLogitEnsemble([members[0]])
    with torch.no_grad():
        assert torch.equal(single(x), logits[0])


def test_ensemble_leaves_members_alone_and_passes_gradients() -> None:
    a, b = DigitsCNN().eval(), DigitsCNN()  # b stays in training mode
    states = [copy.deepcopy(m.state_dict()) for m in (a, b)]
    ensemble = MeanLogitEnsemble([a, b])
    assert not a.training and b.training and ensemble.training
    assert not MeanLogitEnsemble([a]).training
    b.eval()
    x = torch.rand(4, 1, 8, 8, requires_grad=True)
    ensemble(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for m, state in zip((a, b), states, strict=True):
        assert all(torch.equal(state[k], v) for k, v in m.state_dict().items())


def test_ensemble_errors() -> None:
    with pytest.raises(SISValueError, match="at least one model"):
        MeanLogitEnsemble([])
    with pytest.raises(SISTypeError, match="position 1"):
        MeanLogitEnsemble([DigitsCNN(), "model"])  # type: ignore[list-item]
    with pytest.raises(SISTypeError, match="wrap it in a list"):
        MeanLogitEnsemble(DigitsCNN())  # type: ignore[arg-type]
    mixed = MeanLogitEnsemble([DigitsCNN(num_classes=10).eval(), DigitsCNN(num_classes=3).eval()])
    with pytest.raises(SISValueError, match="outputs of one shape"):
        mixed(torch.rand(2, 1, 8, 8))


# --------------------------------------------------------------------------------------------------------------
# Deprecated names
# --------------------------------------------------------------------------------------------------------------


def test_deprecated_names_of_models_warn() -> None:
    import sis_attr.models as models
    from sis_attr.overinterpretation import mitigation

    for name in ("InputDropout", "MeanLogitEnsemble"):
        assert name not in models.__all__
        with pytest.warns(DeprecationWarning, match="sis_attr.overinterpretation"):
            alias = getattr(models, name)
        assert alias is getattr(mitigation, name)
    with pytest.warns(DeprecationWarning, match="test fixture"):
        small = models.SmallCIFARCNN(num_classes=7).eval()
    assert "SmallCIFARCNN" not in models.__all__
    assert small(torch.rand(2, 3, 32, 32)).shape == (2, 7)
    with pytest.raises(AttributeError, match="no_such_model"):
        models.no_such_model  # noqa: B018
