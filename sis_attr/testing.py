"""Toy models with hand-checkable SIS, for doctests, tutorials and tests (like ``captum.testing``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["L2NormScore", "LinearScore", "SumGridClassifier", "TinyConvNet"]


class LinearScore(nn.Module):
    """``f(x) = x.flatten(1) @ weights``: one output per example, for use with :meth:`score`.

    The effect of removing one feature (baseline 0) is exactly ``-w_i x_i``, so backward selection removes
    features in increasing order of ``w_i x_i``.

    Examples
    --------
    >>> model = LinearScore(torch.tensor([1.0, 2.0]))
    >>> model(torch.ones(2, 2))
    tensor([3., 3.])
    """

    def __init__(self, weights: Tensor) -> None:
        super().__init__()
        self.register_buffer("weights", weights.flatten().clone())
        self.weights: Tensor

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1).to(self.weights.dtype) @ self.weights

    @staticmethod
    def score(output: Tensor, target: Tensor) -> Tensor:
        """Use the raw output as the score (pass as ``score_func``)."""
        return output


class L2NormScore(nn.Module):
    """``f(x) = ||x||_2`` per example: a positive score whose SIS are the largest-magnitude entries.

    Examples
    --------
    >>> L2NormScore()(torch.tensor([[3.0, 4.0]]))
    tensor([5.])
    """

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1).norm(dim=1)


class SumGridClassifier(nn.Module):
    """Two-class logits ``[0, sum(x)]`` for 2x2 grids: the probability of class 1 is ``sigmoid(sum(x))``.

    Examples
    --------
    >>> SumGridClassifier()(torch.ones(1, 2, 2))
    tensor([[0., 4.]])
    """

    def forward(self, x: Tensor) -> Tensor:
        s = x.flatten(1).sum(dim=1)
        return torch.stack([torch.zeros_like(s), s], dim=1)


class TinyConvNet(nn.Module):
    """A small random conv net ``(B, C, H, W) -> (B, classes)`` for tests and examples.

    Examples
    --------
    >>> net = TinyConvNet(in_channels=3, classes=4, seed=0)
    >>> net(torch.zeros(2, 3, 6, 6)).shape
    torch.Size([2, 4])
    """

    def __init__(self, in_channels: int = 3, classes: int = 10, width: int = 8, seed: int | None = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.fc = nn.Linear(width, classes)
        if gen is not None:
            with torch.no_grad():
                for name, p in self.named_parameters():
                    scale = 0.0 if name.endswith("bias") else 2.0 / max(1, p[0].numel()) ** 0.5
                    p.copy_(torch.randn(p.shape, generator=gen) * scale)
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.conv1(x))
        h = torch.relu(self.conv2(h))
        return self.fc(h.mean(dim=(2, 3)))
