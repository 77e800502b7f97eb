"""The models of the paper and of the demo (torch only).

* :func:`cifar_resnet` / :class:`CifarResNet`: the CIFAR-10 ResNet-(6n+2) of He et al. (2016) with option-A
  shortcuts, with the module names of akamaster/pytorch_resnet_cifar10, so that its pretrained checkpoints load
  strictly (:func:`load_pretrained_cifar_resnet`).
* :class:`PreActResNet18` and :class:`VGG16BN`: the paper's other two CIFAR-10 architectures (pre-activation
  ResNet18, 11.2M parameters; VGG16 with batch norm, 14.7M), randomly initialised (no checkpoint is bundled).
* :class:`NormalizedModel`: per-channel normalisation as the first step of a model.
* :class:`DigitsCNN`: a small CNN for the 1x8x8 scikit-learn digits (the model of ``sis-attr demo``).

The mitigations of overinterpretation (:class:`~sis_attr.overinterpretation.MeanLogitEnsemble`,
:class:`~sis_attr.overinterpretation.InputDropout`) live in :mod:`sis_attr.overinterpretation.mitigation`.

Every ReLU is its own (non-inplace) :class:`torch.nn.ReLU` module, so hooks and Captum's layer and DeepLift
methods work on these models.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sis_attr._core.validation import format_model, format_positive_int
from sis_attr.datasets import CIFAR10_MEAN_STD_AKAMASTER, SHARED_DATA_ENV_VAR, shared_data_dir
from sis_attr.exceptions import CheckpointNotFoundError, SISTypeError, SISValueError

__all__ = [
    "VGG16BN",
    "BasicBlock",
    "CifarResNet",
    "DigitsCNN",
    "NormalizedModel",
    "PreActResNet18",
    "cifar_resnet",
    "load_pretrained_cifar_resnet",
]


# --------------------------------------------------------------------------------------------------------------
# CIFAR ResNet (akamaster/pytorch_resnet_cifar10 layout)
# --------------------------------------------------------------------------------------------------------------


class _ShortcutA(nn.Module):
    """Option-A shortcut: subsample by 2 and zero-pad the channels (no parameters)."""

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.pad = planes // 4

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad), "constant", 0.0)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or option-A) shortcut.

    Parameters
    ----------
    in_planes, planes : int
        Input and output channels.
    stride : int, default 1
        Stride of the first convolution; where it is not 1 or the widths differ, the shortcut subsamples by 2
        and zero-pads ``planes // 4`` channels on each side (option A, no parameters).
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = _ShortcutA(planes) if stride != 1 or in_planes != planes else nn.Identity()
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR-10 ResNet-(6n+2) with option-A shortcuts (He et al., 2016, Section 4.2).

    Module names follow akamaster/pytorch_resnet_cifar10 (``conv1``, ``bn1``, ``layer1..3``, ``linear``), so
    its checkpoints load with ``strict=True``. Weights of convolutions and the final linear layer are
    initialised with Kaiming-normal, as in that repository.

    Parameters
    ----------
    num_blocks : int
        ``n``, the number of basic blocks per stage (3 for ResNet20, 5 for ResNet32, ...).
    num_classes : int, default 10
        Outputs of the final linear layer.

    See Also
    --------
    cifar_resnet : build by depth.
    load_pretrained_cifar_resnet : load a pretrained checkpoint.
    """

    def __init__(self, num_blocks: int, num_classes: int = 10) -> None:
        super().__init__()
        format_positive_int(num_blocks, "num_blocks", "CifarResNet")
        format_positive_int(num_classes, "num_classes", "CifarResNet")
        self.num_blocks = num_blocks
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.layer1 = self._make_layer(16, 16, num_blocks, stride=1)
        self.layer2 = self._make_layer(16, 32, num_blocks, stride=2)
        self.layer3 = self._make_layer(32, 64, num_blocks, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)

    @staticmethod
    def _make_layer(in_planes: int, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
        blocks = [BasicBlock(in_planes, planes, stride)]
        blocks += [BasicBlock(planes, planes, 1) for _ in range(num_blocks - 1)]
        return nn.Sequential(*blocks)

    @property
    def depth(self) -> int:
        """``6 n + 2``."""
        return 6 * self.num_blocks + 2

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(torch.flatten(self.avgpool(out), 1))


def _blocks_for_depth(depth: object, caller: str) -> int:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6 != 0:
        raise SISValueError(
            f"The `depth` parameter of {caller} must be an integer of the form 6n+2 with n >= 1 "
            f"(20, 32, 44, 56, 110, ...). Got {depth!r} instead."
        )
    return (depth - 2) // 6


def cifar_resnet(depth: int = 20, num_classes: int = 10) -> CifarResNet:
    """Build a randomly initialised CIFAR ResNet of the given depth (``6 n + 2``).

    Parameters
    ----------
    depth : int, default 20
        20, 32, 44, 56, 110, ...: ``n = (depth - 2) / 6`` basic blocks per stage.
    num_classes : int, default 10
        Number of outputs.

    Returns
    -------
    CifarResNet
        In training mode, as every freshly built module. Inputs are ``(N, 3, H, W)`` (32x32 for CIFAR-10).

    Examples
    --------
    >>> model = cifar_resnet(20).eval()
    >>> sum(p.numel() for p in model.parameters())
    269722
    >>> model(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """
    return CifarResNet(_blocks_for_depth(depth, "cifar_resnet"), num_classes)


# --------------------------------------------------------------------------------------------------------------
# The paper's other CIFAR-10 architectures: pre-activation ResNet18 and VGG16 with batch norm
# --------------------------------------------------------------------------------------------------------------


class _PreActBlock(nn.Module):
    """Pre-activation basic block (He et al., 2016b): BN-ReLU-conv3x3, BN-ReLU-conv3x3, plus the shortcut.

    Where the stride is not 1 or the widths differ, the shortcut is a 1x1 convolution (no bias) of the
    pre-activated input; otherwise it is the identity on the raw input.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.relu2(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """Pre-activation ResNet18 for 32x32 CIFAR-10 images (He et al., 2016b): the paper's "ResNet18".

    A 3x3 convolution with 64 filters, then four stages of two pre-activation basic blocks (64, 128, 256 and
    512 channels; stride 2 at the start of each stage after the first; 1x1-convolution shortcuts where the shape
    changes), global average pooling and a linear layer: 11,171,146 parameters for 10 classes (Carter et al.,
    Supplement S1: "11.2M"). The layout and module names (``conv1``, ``layer1..4``, ``linear``; in each block
    ``bn1``, ``conv1``, ``bn2``, ``conv2``, ``shortcut.0``) are those of the widely used
    kuangliu/pytorch-cifar ``PreActResNet18``, so its checkpoints load with ``strict=True``. Global average
    pooling is adaptive, so other input sizes work too.

    Parameters
    ----------
    num_classes : int, default 10
        Outputs of the final linear layer.
    in_channels : int, default 3
        Channels of the input images.

    References
    ----------
    .. [1] K. He, X. Zhang, S. Ren and J. Sun, "Identity Mappings in Deep Residual Networks", ECCV 2016.

    Examples
    --------
    >>> model = PreActResNet18().eval()
    >>> sum(p.numel() for p in model.parameters())
    11171146
    >>> model(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        format_positive_int(num_classes, "num_classes", "PreActResNet18")
        format_positive_int(in_channels, "in_channels", "PreActResNet18")
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        widths = (64, 128, 256, 512)
        stages = []
        in_planes = 64
        for i, planes in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(_PreActBlock(in_planes, planes, stride), _PreActBlock(planes, planes, 1)))
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        out = self.linear(torch.flatten(self.avgpool(out), 1))
        return out


_VGG16_CONFIG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M")
_VGG16_CONFIG += (512, 512, 512, "M")


class VGG16BN(nn.Module):
    """VGG16 with batch normalisation for 32x32 CIFAR-10 images (Simonyan & Zisserman, 2015): the paper's "VGG16".

    The thirteen 3x3 convolutions of VGG16 (configuration D: 64, 64, 128, 128, 256 x 3, 512 x 3, 512 x 3, with
    bias), each followed by batch norm and a ReLU, five 2x2 max-poolings (32x32 becomes 1x1), and one linear layer
    from the 512 features to the classes (the CIFAR variant has no 4096-unit layers): 14,728,266 parameters for
    10 classes (Carter et al., Supplement S1: "14.7M"). The module names (``features.<i>``, ``classifier``) are
    those of the CIFAR VGG used by the paper's code, so such checkpoints load with ``strict=True``. A final
    adaptive average pooling (the identity on 32x32 inputs) lets other input sizes work.

    Parameters
    ----------
    num_classes : int, default 10
        Outputs of the final linear layer.
    in_channels : int, default 3
        Channels of the input images.

    References
    ----------
    .. [1] K. Simonyan and A. Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
       ICLR 2015.

    Examples
    --------
    >>> model = VGG16BN().eval()
    >>> sum(p.numel() for p in model.parameters())
    14728266
    >>> model(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        format_positive_int(num_classes, "num_classes", "VGG16BN")
        format_positive_int(in_channels, "in_channels", "VGG16BN")
        layers: list[nn.Module] = []
        channels = in_channels
        for v in _VGG16_CONFIG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                width = int(v)
                layers += [nn.Conv2d(channels, width, kernel_size=3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
                channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(512, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.classifier(torch.flatten(self.pool(self.features(x)), 1))
        return out


# --------------------------------------------------------------------------------------------------------------
# Normalisation as a model
# --------------------------------------------------------------------------------------------------------------


class NormalizedModel(nn.Module):
    """Apply per-channel normalisation ``(x - mean) / std``, then ``model``.

    Use it to give a model that was trained on normalised inputs an input space of plain ``[0, 1]`` images, in
    which a baseline of 0 means a black pixel. (On the bare model, a baseline of 0 means the per-channel mean
    colour.) ``mean`` and ``std`` are non-persistent buffers: they follow ``.to(device)`` and stay out of the
    state dict, which is the wrapped model's with a ``model.`` prefix.

    The wrapper takes the training flag of ``model`` when built and never changes ``model``'s mode itself (as
    any module, ``wrapper.eval()`` / ``wrapper.train()`` do set it on ``model``).

    Parameters
    ----------
    model : torch.nn.Module
        The model to call on normalised inputs; available as ``.model``.
    mean, std : sequence of float or torch.Tensor
        One value per input channel; ``std`` must be positive.

    See Also
    --------
    sis_attr.datasets.normalize : the same normalisation as a function.

    Examples
    --------
    >>> from sis_attr.datasets import CIFAR10_MEAN_STD_AKAMASTER, normalize
    >>> net = cifar_resnet(20).eval()
    >>> wrapped = NormalizedModel(net, *CIFAR10_MEAN_STD_AKAMASTER)
    >>> x = torch.rand(2, 3, 32, 32)
    >>> torch.allclose(wrapped(x), net(normalize(x, *CIFAR10_MEAN_STD_AKAMASTER)))
    True
    >>> wrapped.training
    False
    """

    mean: Tensor
    std: Tensor

    def __init__(self, model: nn.Module, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor) -> None:
        super().__init__()
        caller = "NormalizedModel"
        format_model(model, caller)
        stats = []
        for name, values in (("mean", mean), ("std", std)):
            try:
                t = torch.as_tensor(values, dtype=torch.float32).detach().clone()
            except (TypeError, ValueError, RuntimeError) as err:
                raise SISTypeError(
                    f"The `{name}` parameter of {caller} must be a sequence of numbers (one per channel). "
                    f"Got {type(values).__name__} instead."
                ) from err
            if t.dim() != 1 or t.numel() == 0 or not torch.isfinite(t).all():
                raise SISValueError(
                    f"The `{name}` parameter of {caller} must be a non-empty 1-d sequence of finite numbers. "
                    f"Got {t.tolist()} instead."
                )
            stats.append(t)
        if stats[0].numel() != stats[1].numel():
            raise SISValueError(
                f"The `mean` and `std` parameters of {caller} must have the same length. "
                f"Got {stats[0].numel()} and {stats[1].numel()} instead."
            )
        if (stats[1] <= 0).any():
            raise SISValueError(f"The `std` parameter of {caller} must be positive. Got {stats[1].tolist()} instead.")
        self.model = model
        # Not persistent: the state dict is the wrapped model's (with a ``model.`` prefix), nothing else.
        self.register_buffer("mean", stats[0].view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", stats[1].view(1, -1, 1, 1), persistent=False)
        self.training = model.training

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.mean.shape[1]:
            raise SISValueError(
                f"NormalizedModel expects inputs of shape (N, {self.mean.shape[1]}, H, W). "
                f"Got shape {tuple(x.shape)} instead."
            )
        mean = self.mean.to(dtype=x.dtype)
        std = self.std.to(dtype=x.dtype)
        out: Tensor = self.model((x - mean) / std, *args, **kwargs)
        return out


# --------------------------------------------------------------------------------------------------------------
# Pretrained checkpoints
# --------------------------------------------------------------------------------------------------------------

_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")


def _find_checkpoint(depth: int, weights_dir: str | os.PathLike[str] | None, caller: str) -> Path:
    if weights_dir is None:
        shared = shared_data_dir()
        if shared is None:
            raise CheckpointNotFoundError(
                f"{caller} was given a depth ({depth}) but no `weights_dir`, and ${SHARED_DATA_ENV_VAR} does not "
                "name a directory. Pass `weights_dir`, the path of a checkpoint file, or set "
                f"${SHARED_DATA_ENV_VAR} to the directory that holds weights/resnet{depth}-*.th."
            )
        directory = shared / "weights"
    else:
        directory = Path(weights_dir)
    candidates = sorted(directory.glob(f"resnet{depth}-*.th")) + sorted(directory.glob(f"resnet{depth}.th"))
    if not candidates:
        raise CheckpointNotFoundError(
            f"{caller} found no checkpoint 'resnet{depth}-*.th' in {str(directory)!r}. "
            "Download it from github.com/akamaster/pytorch_resnet_cifar10 (pretrained_models/) or pass its path."
        )
    return candidates[0]


def _verify_hash(path: Path, caller: str) -> None:
    match = _HASH_IN_NAME.search(path.name)
    if match is None:
        raise SISValueError(
            f"{caller} was asked to check the hash of {path.name!r}, but its name holds no hash prefix "
            "(expected 'name-<sha256 prefix>.th')."
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(match.group(1)):
        raise SISValueError(
            f"{caller}: the sha256 of {str(path)!r} starts with {digest[: len(match.group(1))]}, not with "
            f"{match.group(1)} as its name says. The file is corrupt or not the published checkpoint."
        )


def _strip_prefix(state_dict: Mapping[str, Tensor], prefix: str = "module.") -> dict[str, Tensor]:
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def load_pretrained_cifar_resnet(
    path_or_depth: str | os.PathLike[str] | int,
    *,
    weights_dir: str | os.PathLike[str] | None = None,
    with_normalization: bool = True,
    check_hash: bool = False,
    map_location: str | torch.device = "cpu",
) -> nn.Module:
    """Load a pretrained CIFAR-10 ResNet checkpoint of akamaster/pytorch_resnet_cifar10, in eval mode.

    The checkpoints (``resnet20-12fca82f.th``, ``resnet32-d509ac18.th``, ``resnet44-014dd654.th``,
    ``resnet56-4bfd9763.th``) hold ``{"best_prec1": float, "state_dict": {...}}`` with a ``module.`` prefix on
    every key. They were trained on ``normalize(x / 255, *CIFAR10_MEAN_STD_AKAMASTER)`` (ImageNet statistics).
    The file is read with ``torch.load(..., weights_only=True)`` and the prefix-stripped state dict is loaded
    strictly; the depth is inferred from the state dict.

    **Input space.** With ``with_normalization=True`` (default) the result is a :class:`NormalizedModel`
    and expects float images in ``[0, 1]`` (``x / 255``, what :mod:`sis_attr.datasets` returns): a SIS baseline
    of 0 then means a black pixel. With ``with_normalization=False`` the bare :class:`CifarResNet` is returned and
    expects already normalised images: a baseline of 0 then means the mean colour of ImageNet.

    Parameters
    ----------
    path_or_depth : str, os.PathLike or int
        A checkpoint file, or a depth (20, 32, 44, 56) to look up ``resnet<depth>-*.th`` in ``weights_dir``.
    weights_dir : str or os.PathLike, optional
        Where to look up a depth. Defaults to ``shared_data_dir() / "weights"`` (the ``weights`` folder of the
        directory named by the environment variable ``SIS_ATTR_SHARED_DATA``).
    with_normalization : bool, default True
        Wrap the ResNet in :class:`NormalizedModel` with :data:`~sis_attr.datasets.CIFAR10_MEAN_STD_AKAMASTER`.
    check_hash : bool, default False
        Check that the file's sha256 starts with the hex digits after the last ``-`` of its name.
    map_location : str or torch.device, default "cpu"
        Passed to :func:`torch.load`; the model's parameters end up there.

    Returns
    -------
    torch.nn.Module
        The model in eval mode, with ``requires_grad=True`` parameters (as any freshly built module).

    Raises
    ------
    CheckpointNotFoundError
        If the file (or, for a depth, the weights directory or a matching checkpoint) does not exist. It
        subclasses :class:`FileNotFoundError`.
    SISValueError
        If the file is not such a checkpoint, its keys do not match the architecture, it holds a ResNet of another
        depth than the one asked for, or the hash check fails.

    References
    ----------
    .. [1] Y. Idelbayev, "Proper ResNet Implementation for CIFAR10/CIFAR100 in PyTorch",
       github.com/akamaster/pytorch_resnet_cifar10.
    .. [2] K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.

    Examples
    --------
    A checkpoint in the same format (the published ones load the same way):

    >>> import tempfile
    >>> net = cifar_resnet(20)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "resnet20.th"
    ...     sd = {"module." + k: v for k, v in net.state_dict().items()}
    ...     torch.save({"best_prec1": 0.0, "state_dict": sd}, path)
    ...     model = load_pretrained_cifar_resnet(path)
    >>> type(model).__name__, model.training, type(model.model).__name__, model.model.depth
    ('NormalizedModel', False, 'CifarResNet', 20)
    """
    caller = "load_pretrained_cifar_resnet"
    if isinstance(path_or_depth, bool):
        raise SISTypeError(
            f"The `path_or_depth` parameter of {caller} must be a path or an integer depth. Got a bool instead."
        )
    depth: int | None = None
    if isinstance(path_or_depth, int):
        depth = _blocks_for_depth(path_or_depth, caller) * 6 + 2
        path = _find_checkpoint(depth, weights_dir, caller)
    elif isinstance(path_or_depth, (str, os.PathLike)):
        path = Path(path_or_depth)
    else:
        raise SISTypeError(
            f"The `path_or_depth` parameter of {caller} must be a path or an integer depth. "
            f"Got {type(path_or_depth).__name__} instead."
        )
    if not path.is_file():
        raise CheckpointNotFoundError(f"{caller}: the checkpoint {str(path)!r} does not exist.")
    if check_hash:
        _verify_hash(path, caller)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types (UnpicklingError, RuntimeError, ...)
        raise SISValueError(f"{caller} could not read {str(path)!r} as a torch checkpoint: {err}") from err
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise SISValueError(
            f"{caller} expected {str(path)!r} to hold a state dict (or a dict with a 'state_dict' entry). "
            f"Got {type(checkpoint).__name__} instead."
        )
    state = _strip_prefix(state)
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"layer1\.(\d+)\.", k))}
    if not blocks or "linear.weight" not in state:
        raise SISValueError(
            f"{caller} expected a CIFAR ResNet state dict (keys 'layer1.<i>.*', 'linear.weight'). "
            f"Got keys such as {sorted(state)[:5]} instead."
        )
    model = CifarResNet(max(blocks) + 1, num_classes=int(state["linear.weight"].shape[0]))
    if depth is not None and model.depth != depth:
        raise SISValueError(
            f"{caller} was asked for depth {depth}, but {str(path)!r} holds a ResNet{model.depth}. "
            "Rename or remove the file, or pass its path to load it as it is."
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise SISValueError(f"{caller}: the checkpoint {str(path)!r} does not match a CIFAR ResNet: {err}") from err
    model = model.to(map_location).eval()
    if with_normalization:
        return NormalizedModel(model, *CIFAR10_MEAN_STD_AKAMASTER).to(map_location).eval()
    return model


# --------------------------------------------------------------------------------------------------------------
# Small CNNs
# --------------------------------------------------------------------------------------------------------------


class DigitsCNN(nn.Module):
    """A small CNN for the 1x8x8 scikit-learn digits (38k parameters).

    Two 3x3 convolutions with batch norm (16 and 32 channels), 2x2 max pooling, then a 64-unit hidden layer with
    batch norm. Batch norm everywhere makes it train stably with the paper's recipe (SGD, learning rate 0.1):
    :func:`sis_attr.training.train_classifier` with ``epochs=5`` reaches about 98-99% accuracy on held-out
    digits in under a second of CPU time. Inputs must be 8x8.

    Parameters
    ----------
    num_classes : int, default 10
        Outputs of the final linear layer.
    in_channels : int, default 1
        Channels of the input images.

    Examples
    --------
    >>> DigitsCNN().eval()(torch.zeros(3, 1, 8, 8)).shape
    torch.Size([3, 10])
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        format_positive_int(num_classes, "num_classes", "DigitsCNN")
        format_positive_int(in_channels, "in_channels", "DigitsCNN")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 64, bias=False),
            nn.BatchNorm1d(64),
            nn.ReLU(),
            nn.Linear(64, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.classifier(self.features(x))
        return out


class _SmallCIFARCNN(nn.Module):
    """Deprecated (``sis_attr.models.SmallCIFARCNN``): a small CNN for 3x32x32 images, kept for one release.

    No part of the package, its examples or benchmarks uses it; build your own model, or use
    :func:`cifar_resnet` (``cifar_resnet(8)`` is small) or :class:`sis_attr.testing.TinyConvNet`.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        format_positive_int(num_classes, "num_classes", "SmallCIFARCNN")
        format_positive_int(in_channels, "in_channels", "SmallCIFARCNN")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.classifier(torch.flatten(self.pool(self.features(x)), 1))
        return out


# --------------------------------------------------------------------------------------------------------------
# Deprecated names (removed in the next release)
# --------------------------------------------------------------------------------------------------------------

_MOVED_TO_MITIGATION = ("InputDropout", "MeanLogitEnsemble")


def __getattr__(name: str) -> Any:
    """Deprecated aliases: ``InputDropout`` and ``MeanLogitEnsemble`` (moved), ``SmallCIFARCNN`` (removed)."""
    if name in _MOVED_TO_MITIGATION:
        warnings.warn(
            f"sis_attr.models.{name} is deprecated and will be removed in the next release: import it from "
            f"sis_attr.overinterpretation (defined in sis_attr.overinterpretation.mitigation).",
            DeprecationWarning,
            stacklevel=2,
        )
        from sis_attr.overinterpretation import mitigation  # lazy: the analyses import this module

        return getattr(mitigation, name)
    if name == "SmallCIFARCNN":
        warnings.warn(
            "sis_attr.models.SmallCIFARCNN is deprecated and will be removed in the next release: it was a test "
            "fixture. Use your own model, sis_attr.models.cifar_resnet(8) or sis_attr.testing.TinyConvNet.",
            DeprecationWarning,
            stacklevel=2,
        )
        return _SmallCIFARCNN
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
