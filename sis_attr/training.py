"""Train and evaluate image classifiers with the recipe of Carter et al. (Supplementary S1).

:func:`train_classifier` minimises cross-entropy by SGD with Nesterov momentum 0.9, weight decay 5e-4, batch
size 128 and a learning rate of 0.1 divided by 5 after 30%, 60% and 80% of the epochs (epochs 60, 120 and 160
of 200 in the paper), optionally with the standard CIFAR augmentation (random 32x32 crops of the image padded
by 4 pixels, and horizontal flips). :func:`evaluate_accuracy` and :func:`predict_proba` run a model in batches
without autograd.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from sis_attr._core.validation import (
    format_flag,
    format_generator,
    format_images,
    format_labels,
    format_model,
    format_non_negative_int,
    format_number,
    format_positive_int,
    model_device,
    warn_if_training,
)
from sis_attr.exceptions import SISTypeError, SISValueError

__all__ = [
    "PAPER_MILESTONES",
    "TrainingHistory",
    "evaluate_accuracy",
    "predict_proba",
    "random_crop_flip",
    "train_classifier",
]

PAPER_MILESTONES: tuple[float, ...] = (0.3, 0.6, 0.8)
"""Learning-rate milestones as fractions of the epochs: 60, 120 and 160 of 200 in the paper."""


@dataclass(frozen=True)
class TrainingHistory:
    """What happened in each epoch of :func:`train_classifier`.

    Attributes
    ----------
    loss : tuple of float
        Mean training cross-entropy per epoch (over the, possibly augmented, training batches).
    accuracy : tuple of float
        Training accuracy per epoch, measured on the training batches as they were seen (in training mode).
    lr : tuple of float
        Learning rate used in each epoch.
    val_accuracy : tuple of float
        Accuracy on ``validation_data`` after each epoch, in eval mode; empty without validation data.
    seconds : float
        Wall-clock time of the whole run.
    """

    loss: tuple[float, ...]
    accuracy: tuple[float, ...]
    lr: tuple[float, ...]
    val_accuracy: tuple[float, ...]
    seconds: float

    @property
    def epochs(self) -> int:
        """Number of epochs run."""
        return len(self.loss)


# --------------------------------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------------------------------


def random_crop_flip(
    images: Tensor, *, padding: int = 4, flip: bool = True, generator: torch.Generator | None = None
) -> Tensor:
    """Standard CIFAR augmentation on a batch: a random crop of the zero-padded image, and a random flip.

    Each image is zero-padded by ``padding`` pixels on every side and cropped back to its size at a uniformly
    random offset (as ``torchvision.transforms.RandomCrop(size, padding)``), then flipped left-right with
    probability 1/2 (as ``RandomHorizontalFlip``). Every image gets its own offset and flip.

    Parameters
    ----------
    images : torch.Tensor
        ``(N, C, H, W)`` images.
    padding : int, default 4
        Zero padding on each side, so offsets range over ``0 .. 2 * padding``.
    flip : bool, default True
        Whether to flip at random.
    generator : torch.Generator, optional
        Source of randomness; the global generator otherwise.

    Returns
    -------
    torch.Tensor
        A new tensor of the same shape, device and dtype.

    Examples
    --------
    >>> x = torch.arange(16.0).view(1, 1, 4, 4)
    >>> y = random_crop_flip(x, padding=0, generator=torch.Generator().manual_seed(1))
    >>> torch.equal(y, x) or torch.equal(y, x.flip(-1))
    True
    """
    caller = "random_crop_flip"
    if not isinstance(images, Tensor) or images.dim() != 4:
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise SISValueError(f"The `images` parameter of {caller} must have shape (N, C, H, W). Got {got} instead.")
    padding = format_non_negative_int(padding, "padding", caller)
    flip = format_flag(flip, "flip", caller)
    generator = format_generator(generator, caller)
    n, _, h, w = images.shape
    gen_device = generator.device if generator is not None else images.device
    out = images
    if padding > 0:
        padded = F.pad(images, (padding, padding, padding, padding))
        offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=gen_device).to(images.device)
        rows = offsets[0, :, None] + torch.arange(h, device=images.device)  # (N, H)
        cols = offsets[1, :, None] + torch.arange(w, device=images.device)  # (N, W)
        batch = torch.arange(n, device=images.device)[:, None, None, None]
        channel = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
        out = padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]
    if flip:
        do_flip = (torch.rand(n, generator=generator, device=gen_device) < 0.5).to(images.device)
        out = torch.where(do_flip[:, None, None, None], out.flip(-1), out)
    return out if out is not images else images.clone()


# --------------------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------------------


def _as_tensor_pair(data: object, caller: str, param: str) -> tuple[Tensor, Tensor] | None:
    """``(images, labels)`` from a tuple/list (or :class:`~sis_attr.datasets.LabelledImages`), else ``None``."""
    if isinstance(data, (tuple, list)) and len(data) in (2, 3) and isinstance(data[0], Tensor):
        images = format_images(data[0], caller, f"{param}[0] (images)", four_d=False)
        labels = format_labels(data[1], images.shape[0], caller, param=f"{param}[1] (labels)")
        return images, labels
    return None


def _milestone_epochs(milestones: Sequence[float], epochs: int, caller: str) -> list[int]:
    if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Sequence):
        raise SISTypeError(
            f"The `milestones` parameter of {caller} must be a sequence of fractions of `epochs` in (0, 1]. "
            f"Got {type(milestones).__name__} instead."
        )
    result = []
    for m in milestones:
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0.0 < float(m) <= 1.0:
            raise SISValueError(
                f"The `milestones` parameter of {caller} must hold fractions of `epochs` in (0, 1] "
                f"(the paper: (0.3, 0.6, 0.8), i.e. epochs 60, 120, 160 of 200). Got {list(milestones)!r} instead."
            )
        result.append(max(1, round(float(m) * epochs)))
    return sorted(result)


def train_classifier(
    model: nn.Module,
    data: Dataset[Any] | tuple[Tensor, Tensor] | Sequence[Any],
    *,
    epochs: int,
    batch_size: int = 128,
    lr: float = 0.1,
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float = 5e-4,
    milestones: Sequence[float] = PAPER_MILESTONES,
    gamma: float = 0.2,
    augment: bool = False,
    validation_data: tuple[Tensor, Tensor] | Sequence[Any] | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    show_progress: bool = False,
) -> tuple[nn.Module, TrainingHistory]:
    """Train a classifier with the paper's SGD recipe (Carter et al., Supplementary S1).

    Cross-entropy is minimised by SGD with Nesterov momentum; the learning rate starts at ``lr`` and is
    multiplied by ``gamma`` at each milestone (the paper: 200 epochs, 0.1, divided by 5 after epochs 60, 120 and
    160, batch size 128, momentum 0.9, weight decay 5e-4 on every parameter). The data are shuffled every epoch.

    The model is trained **in place**: it is put in training mode, moved to ``device`` if one is given, and
    returned in eval mode. Normalise inputs beforehand, or train a :class:`~sis_attr.models.NormalizedModel`.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier returning ``(N, num_classes)`` logits.
    data : Dataset or (images, labels)
        Either a tuple ``(images, labels)`` of a float ``(N, C, H, W)`` tensor and an integer ``(N,)`` tensor (a
        :class:`~sis_attr.datasets.LabelledImages` works too; this path is the fastest), or a map-style dataset
        yielding ``(image, label)`` pairs (read through a :class:`~torch.utils.data.DataLoader`).
    epochs : int
        Number of passes over the data.
    batch_size : int, default 128
    lr : float, default 0.1
        Initial learning rate.
    momentum : float, default 0.9
    nesterov : bool, default True
    weight_decay : float, default 5e-4
    milestones : sequence of float, default (0.3, 0.6, 0.8)
        Fractions of ``epochs`` after which the learning rate is multiplied by ``gamma`` (rounded to whole
        epochs, at least 1).
    gamma : float, default 0.2
    augment : bool, default False
        Apply :func:`random_crop_flip` (4-pixel padding, horizontal flips) to every training batch.
    validation_data : (images, labels), optional
        Evaluated after each epoch (in eval mode) into ``history.val_accuracy``.
    generator : torch.Generator, optional
        Source of randomness for shuffling and augmentation. Randomness inside the model (dropout) is not
        covered. With neither ``generator`` nor ``seed`` the global generator is used.
    seed : int, optional
        Shortcut for ``generator=torch.Generator().manual_seed(seed)``; not both.
    device : str or torch.device, optional
        Where to train; defaults to the device of the model's parameters. Batches are moved there.
    show_progress : bool, default False
        Show a tqdm progress bar over epochs with the running loss and accuracy.

    Returns
    -------
    model : torch.nn.Module
        The same object, trained and in eval mode.
    history : TrainingHistory
        Loss, accuracy and learning rate per epoch.

    Raises
    ------
    SISTypeError, SISValueError
        For invalid arguments, with the parameter named in the message.

    References
    ----------
    .. [1] B. Carter, S. Jain, J. Mueller, D. Gifford, "Overinterpretation reveals image classification model
       pathologies", Supplementary S1.

    Examples
    --------
    >>> from sis_attr.datasets import load_digits_images
    >>> from sis_attr.models import DigitsCNN
    >>> images, labels, _ = load_digits_images()
    >>> _ = torch.manual_seed(0)
    >>> model, history = train_classifier(DigitsCNN(), (images[:1500], labels[:1500]), epochs=4, seed=0)
    >>> model.training, history.epochs, [round(v, 4) for v in history.lr]
    (False, 4, [0.1, 0.02, 0.004, 0.0008])
    >>> evaluate_accuracy(model, images[1500:], labels[1500:]) > 0.9
    True
    """
    caller = "train_classifier"
    model = format_model(model, caller)
    n_epochs = format_positive_int(epochs, "epochs", caller)
    bs = format_positive_int(batch_size, "batch_size", caller)
    lr_ = format_number(lr, "lr", caller, low=0.0, low_open=True, high=None)
    momentum_ = format_number(momentum, "momentum", caller, low=0.0, low_open=False, high=1.0)
    wd = format_number(weight_decay, "weight_decay", caller, low=0.0, low_open=False, high=None)
    gamma_ = format_number(gamma, "gamma", caller, low=0.0, low_open=True, high=None)
    if nesterov and momentum_ == 0.0:
        raise SISValueError(f"The `momentum` parameter of {caller} must be positive when `nesterov=True`. Got 0.")
    milestone_epochs = _milestone_epochs(milestones, n_epochs, caller)
    if seed is not None and generator is not None:
        raise SISValueError(f"Pass either `seed` or `generator` to {caller}, not both.")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise SISTypeError(f"The `seed` parameter of {caller} must be an integer. Got {type(seed).__name__}.")
        generator = torch.Generator().manual_seed(seed)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise SISTypeError(
            f"The `generator` parameter of {caller} must be a torch.Generator or None. "
            f"Got {type(generator).__name__} instead."
        )
    pair = _as_tensor_pair(data, caller, "data")
    if pair is None and not isinstance(data, Dataset):
        raise SISTypeError(
            f"The `data` parameter of {caller} must be a tuple (images, labels) of tensors or a torch Dataset. "
            f"Got {type(data).__name__} instead."
        )
    validation = None
    if validation_data is not None:
        validation = _as_tensor_pair(validation_data, caller, "validation_data")
        if validation is None:
            raise SISTypeError(
                f"The `validation_data` parameter of {caller} must be a tuple (images, labels) of tensors. "
                f"Got {type(validation_data).__name__} instead."
            )

    target_device = torch.device(device) if device is not None else model_device(model)
    if device is not None:
        model.to(target_device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr_, momentum=momentum_, nesterov=nesterov, weight_decay=wd)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestone_epochs, gamma=gamma_)
    gen_device = generator.device if generator is not None else torch.device("cpu")

    loader: DataLoader[Any] | None = None
    if pair is None:
        loader = DataLoader(cast(Dataset[Any], data), batch_size=bs, shuffle=True, generator=generator)

    from tqdm.auto import tqdm

    losses: list[float] = []
    accuracies: list[float] = []
    lrs: list[float] = []
    val_accuracies: list[float] = []
    start = time.perf_counter()
    bar = tqdm(range(n_epochs), desc=caller, unit="epoch", disable=not show_progress)
    for _epoch in bar:
        model.train()
        lrs.append(float(optimizer.param_groups[0]["lr"]))
        total_loss = torch.zeros((), device=target_device)
        total_correct = torch.zeros((), dtype=torch.long, device=target_device)
        seen = 0
        if loader is not None:
            batches: Any = loader
        else:
            images, labels = cast(tuple[Tensor, Tensor], pair)
            perm = torch.randperm(images.shape[0], generator=generator, device=gen_device).to(images.device)
            batches = ((images[idx], labels[idx]) for idx in perm.split(bs))
        for x, y in batches:
            if not isinstance(x, Tensor) or not isinstance(y, Tensor):
                raise SISTypeError(
                    f"The dataset passed to {caller} must yield (image tensor, label) pairs. "
                    f"Got a batch of {type(x).__name__} and {type(y).__name__} instead."
                )
            x = x.to(target_device, non_blocking=True)
            y = y.to(target_device, non_blocking=True).long()
            if augment:
                x = random_crop_flip(x, generator=generator)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.detach() * y.shape[0]
            total_correct += (logits.detach().argmax(dim=1) == y).sum()
            seen += int(y.shape[0])
        scheduler.step()
        losses.append(float(total_loss) / max(seen, 1))
        accuracies.append(float(total_correct) / max(seen, 1))
        postfix = {"loss": f"{losses[-1]:.4f}", "acc": f"{accuracies[-1]:.3f}"}
        if validation is not None:
            model.eval()
            val_accuracies.append(_accuracy(model, validation[0], validation[1], max(bs, 256)))
            postfix["val_acc"] = f"{val_accuracies[-1]:.3f}"
        bar.set_postfix(postfix)
    bar.close()
    model.eval()
    history = TrainingHistory(
        loss=tuple(losses),
        accuracy=tuple(accuracies),
        lr=tuple(lrs),
        val_accuracy=tuple(val_accuracies),
        seconds=time.perf_counter() - start,
    )
    return model, history


# --------------------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def _logits(model: nn.Module, images: Tensor, batch_size: int) -> Tensor:
    device = model_device(model)
    chunks = [model(chunk.to(device)).to(images.device) for chunk in images.split(batch_size)]
    return torch.cat(chunks)


def _accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int) -> float:
    predictions = _logits(model, images, batch_size).argmax(dim=1)
    return float((predictions == labels.to(predictions.device)).double().mean())


def evaluate_accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` on ``(images, labels)``, in batches and without autograd.

    Batches are moved to the device of the model's parameters. The model's mode is left as it is (a warning is
    issued if it is in training mode).

    Parameters
    ----------
    model : torch.nn.Module
        Returns ``(N, num_classes)`` scores.
    images : torch.Tensor
        Floating-point ``(N, ...)`` inputs.
    labels : torch.Tensor
        Integer ``(N,)`` labels.
    batch_size : int, default 256

    Returns
    -------
    float
        The fraction of images whose arg-max score is the label.

    Examples
    --------
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()
    >>> with torch.no_grad():
    ...     _ = model[1].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
    ...     _ = model[1].bias.zero_()
    >>> evaluate_accuracy(model, torch.eye(4)[:2].view(2, 1, 2, 2), torch.tensor([0, 0]))
    0.5
    """
    caller = "evaluate_accuracy"
    model = format_model(model, caller)
    images = format_images(images, caller, four_d=False)
    labels = format_labels(labels, images.shape[0], caller)
    bs = format_positive_int(batch_size, "batch_size", caller)
    warn_if_training(model, caller)
    return _accuracy(model, images, labels, bs)


def predict_proba(model: nn.Module, images: Tensor, batch_size: int = 256) -> Tensor:
    """Softmax class probabilities of ``model`` on ``images``, in batches and without autograd.

    Batches are moved to the device of the model's parameters; the result is returned on the device of
    ``images``. The model's mode is left as it is (a warning is issued if it is in training mode).

    Parameters
    ----------
    model : torch.nn.Module
        Returns ``(N, num_classes)`` logits.
    images : torch.Tensor
        Floating-point ``(N, ...)`` inputs.
    batch_size : int, default 256

    Returns
    -------
    torch.Tensor
        ``(N, num_classes)`` probabilities (rows sum to 1), on ``images.device``.

    Examples
    --------
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    >>> p = predict_proba(model, torch.rand(5, 1, 2, 2), batch_size=2)
    >>> p.shape, bool(torch.allclose(p.sum(dim=1), torch.ones(5)))
    (torch.Size([5, 3]), True)
    """
    caller = "predict_proba"
    model = format_model(model, caller)
    images = format_images(images, caller, four_d=False)
    bs = format_positive_int(batch_size, "batch_size", caller)
    warn_if_training(model, caller)
    logits = _logits(model, images, bs)
    if logits.dim() != 2:
        raise SISValueError(
            f"The model passed to {caller} must return (N, num_classes) logits. Got shape {tuple(logits.shape)}."
        )
    return torch.softmax(logits, dim=1)
