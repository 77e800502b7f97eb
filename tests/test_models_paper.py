"""The paper's other CIFAR-10 architectures: pre-activation ResNet18 and VGG16 with batch norm (Supplement S1).

The paper states 11.2M and 14.7M parameters. The exact counts, 11,171,146 and 14,728,266 for 10 classes, are
checked against the layer-by-layer sums written out here (an independent statement of the architectures).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sis_attr.exceptions import SISValueError
from sis_attr.models import VGG16BN, PreActResNet18

PREACT_RESNET18_PARAMETERS = 11_171_146
VGG16_BN_PARAMETERS = 14_728_266


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _conv(cin: int, cout: int, k: int, bias: bool) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def _preact_resnet18_by_hand(classes: int) -> int:
    total = _conv(3, 64, 3, bias=False)
    cin = 64
    for i, width in enumerate((64, 128, 256, 512)):
        for j in range(2):
            total += 2 * cin + _conv(cin, width, 3, bias=False) + 2 * width + _conv(width, width, 3, bias=False)
            if cin != width or (j == 0 and i > 0):
                total += _conv(cin, width, 1, bias=False)  # 1x1 projection shortcut
            cin = width
    return total + 512 * classes + classes


def _vgg16_bn_by_hand(classes: int) -> int:
    widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    total, cin = 0, 3
    for width in widths:
        total += _conv(cin, width, 3, bias=True) + 2 * width  # conv with bias, batch-norm scale and shift
        cin = width
    return total + 512 * classes + classes


@pytest.mark.parametrize("classes", [10, 100])
def test_parameter_counts_match_the_paper(classes: int) -> None:
    resnet, vgg = _count(PreActResNet18(num_classes=classes)), _count(VGG16BN(num_classes=classes))
    assert resnet == _preact_resnet18_by_hand(classes)
    assert vgg == _vgg16_bn_by_hand(classes)
    if classes == 10:
        assert resnet == PREACT_RESNET18_PARAMETERS and round(resnet / 1e6, 1) == 11.2  # paper: 11.2M
        assert vgg == VGG16_BN_PARAMETERS and round(vgg / 1e6, 1) == 14.7  # paper: 14.7M


@pytest.mark.parametrize("build", [PreActResNet18, VGG16BN], ids=["preact_resnet18", "vgg16_bn"])
def test_forward_shapes_and_other_sizes(build: type[nn.Module]) -> None:
    model = build(num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.rand(3, 3, 32, 32)).shape == (3, 7)
        assert model(torch.rand(1, 3, 64, 48)).shape == (1, 7)  # adaptive pooling: other sizes work
    grey = build(in_channels=1).eval()
    with torch.no_grad():
        assert grey(torch.rand(2, 1, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(("build", "relus"), [(PreActResNet18, 16), (VGG16BN, 13)], ids=["preact_resnet18", "vgg16_bn"])
def test_every_relu_is_its_own_non_inplace_module(build: type[nn.Module], relus: int) -> None:
    """Hooks and Captum's layer methods need one ReLU module per use, none in place."""
    found = [m for m in build().modules() if isinstance(m, nn.ReLU)]
    assert len(found) == relus and len({id(m) for m in found}) == relus
    assert not any(m.inplace for m in found)


def test_preact_block_is_an_identity_mapping_when_its_residual_is_zero() -> None:
    """Pre-activation: an identity block adds its residual to the raw input (no activation after the sum)."""
    model = PreActResNet18().eval()
    block = model.layer1[1]
    with torch.no_grad():
        block.conv2.weight.zero_()
        x = torch.randn(2, 64, 8, 8)  # negative values survive: no ReLU after the addition
        assert torch.equal(block(x), x)
        down = model.layer2[0]  # a projection block applies its 1x1 shortcut to BN-ReLU(x)
        down.conv2.weight.zero_()
        expected = down.shortcut(down.relu1(down.bn1(x)))
        assert torch.allclose(down(x), expected)
        assert down(x).shape == (2, 128, 4, 4)


def test_state_dict_names_follow_the_common_cifar_layouts() -> None:
    """kuangliu/pytorch-cifar's PreActResNet18 and the paper's CIFAR VGG16-BN names, so their checkpoints load."""
    resnet = PreActResNet18().state_dict()
    assert resnet["conv1.weight"].shape == (64, 3, 3, 3)
    assert resnet["layer2.0.shortcut.0.weight"].shape == (128, 64, 1, 1)
    assert "layer1.0.shortcut.0.weight" not in resnet and "layer2.1.shortcut.0.weight" not in resnet
    assert resnet["layer4.1.bn2.running_var"].shape == (512,)
    assert resnet["linear.weight"].shape == (10, 512)
    vgg = VGG16BN().state_dict()
    assert vgg["features.0.weight"].shape == (64, 3, 3, 3) and vgg["features.0.bias"].shape == (64,)
    assert vgg["features.1.running_mean"].shape == (64,)
    assert vgg["features.40.weight"].shape == (512, 512, 3, 3) and "features.41.num_batches_tracked" in vgg
    assert vgg["classifier.weight"].shape == (10, 512)
    # a state dict round trip is strict
    PreActResNet18().load_state_dict(resnet, strict=True)
    VGG16BN().load_state_dict(vgg, strict=True)


@pytest.mark.parametrize("build", [PreActResNet18, VGG16BN], ids=["preact_resnet18", "vgg16_bn"])
def test_one_training_step_changes_every_layer(build: type[nn.Module]) -> None:
    torch.manual_seed(0)
    model = build().train()
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_validation() -> None:
    for build in (PreActResNet18, VGG16BN):
        with pytest.raises(SISValueError, match=f"The `num_classes` parameter of {build.__name__}"):
            build(num_classes=0)
        with pytest.raises(SISValueError, match=f"The `in_channels` parameter of {build.__name__}"):
            build(in_channels=True)
