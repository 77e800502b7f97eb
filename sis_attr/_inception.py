"""An Inception-v3-shaped network with random weights, for smoke runs of the ImageNet example (private).

Used by ``examples/reproduce_imagenet_sis.py`` when torchvision, its Inception-v3 weights or an ImageNet folder
are missing (and in CI), so that the example's code path runs without them. ``benchmarks/bench_gradient_sis.py``
keeps its own copy, so this module can change with the example alone. Not part of the public API.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__: list[str] = []


class _Conv(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], **kw: Any) -> None:
        super().__init__(nn.Conv2d(cin, cout, kernel, bias=False, **kw), nn.BatchNorm2d(cout, eps=0.001), nn.ReLU())


class _Concat(nn.Module):
    def __init__(self, *branches: nn.Module) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([b(x) for b in self.branches], dim=1)


class InceptionV3Like(nn.Module):
    """Inception-v3 (Szegedy et al., 2016) layer for layer, channel counts scaled by ``width``.

    ``width=1`` has the torchvision model's shapes (23.8M parameters without the auxiliary classifier) and expects
    299x299 inputs. Weights are random (He-normal convolutions, so activations neither vanish nor explode;
    torchvision is not needed); BatchNorm keeps its default running statistics, so call ``.eval()``.
    """

    def __init__(self, width: float = 1.0, num_classes: int = 1000, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's global generator
            torch.manual_seed(seed)
            self._build(width, num_classes)

    def _build(self, width: float, num_classes: int) -> None:
        def c(n: int) -> int:
            return max(4, round(n * width))

        def block_a(cin: int, pool: int) -> tuple[nn.Module, int]:
            m = _Concat(
                _Conv(cin, c(64), 1),
                nn.Sequential(_Conv(cin, c(48), 1), _Conv(c(48), c(64), 5, padding=2)),
                nn.Sequential(
                    _Conv(cin, c(64), 1), _Conv(c(64), c(96), 3, padding=1), _Conv(c(96), c(96), 3, padding=1)
                ),
                nn.Sequential(nn.AvgPool2d(3, 1, 1), _Conv(cin, c(pool), 1)),
            )
            return m, c(64) + c(64) + c(96) + c(pool)

        def block_b(cin: int) -> tuple[nn.Module, int]:
            m = _Concat(
                _Conv(cin, c(384), 3, stride=2),
                nn.Sequential(
                    _Conv(cin, c(64), 1), _Conv(c(64), c(96), 3, padding=1), _Conv(c(96), c(96), 3, stride=2)
                ),
                nn.MaxPool2d(3, 2),
            )
            return m, c(384) + c(96) + cin

        def block_c(cin: int, c7: int) -> tuple[nn.Module, int]:
            h = (1, 7), (0, 3)
            v = (7, 1), (3, 0)
            m = _Concat(
                _Conv(cin, c(192), 1),
                nn.Sequential(
                    _Conv(cin, c(c7), 1),
                    _Conv(c(c7), c(c7), h[0], padding=h[1]),
                    _Conv(c(c7), c(192), v[0], padding=v[1]),
                ),
                nn.Sequential(
                    _Conv(cin, c(c7), 1),
                    _Conv(c(c7), c(c7), v[0], padding=v[1]),
                    _Conv(c(c7), c(c7), h[0], padding=h[1]),
                    _Conv(c(c7), c(c7), v[0], padding=v[1]),
                    _Conv(c(c7), c(192), h[0], padding=h[1]),
                ),
                nn.Sequential(nn.AvgPool2d(3, 1, 1), _Conv(cin, c(192), 1)),
            )
            return m, 4 * c(192)

        def block_d(cin: int) -> tuple[nn.Module, int]:
            m = _Concat(
                nn.Sequential(_Conv(cin, c(192), 1), _Conv(c(192), c(320), 3, stride=2)),
                nn.Sequential(
                    _Conv(cin, c(192), 1),
                    _Conv(c(192), c(192), (1, 7), padding=(0, 3)),
                    _Conv(c(192), c(192), (7, 1), padding=(3, 0)),
                    _Conv(c(192), c(192), 3, stride=2),
                ),
                nn.MaxPool2d(3, 2),
            )
            return m, c(320) + c(192) + cin

        def block_e(cin: int) -> tuple[nn.Module, int]:
            split = _Concat(
                _Conv(c(384), c(384), (1, 3), padding=(0, 1)), _Conv(c(384), c(384), (3, 1), padding=(1, 0))
            )
            split2 = _Concat(
                _Conv(c(384), c(384), (1, 3), padding=(0, 1)), _Conv(c(384), c(384), (3, 1), padding=(1, 0))
            )
            m = _Concat(
                _Conv(cin, c(320), 1),
                nn.Sequential(_Conv(cin, c(384), 1), split),
                nn.Sequential(_Conv(cin, c(448), 1), _Conv(c(448), c(384), 3, padding=1), split2),
                nn.Sequential(nn.AvgPool2d(3, 1, 1), _Conv(cin, c(192), 1)),
            )
            return m, c(320) + 4 * c(384) + c(192)

        layers: list[nn.Module] = [
            _Conv(3, c(32), 3, stride=2),
            _Conv(c(32), c(32), 3),
            _Conv(c(32), c(64), 3, padding=1),
            nn.MaxPool2d(3, 2),
            _Conv(c(64), c(80), 1),
            _Conv(c(80), c(192), 3),
            nn.MaxPool2d(3, 2),
        ]
        ch = c(192)
        for make in (
            lambda n: block_a(n, 32),
            lambda n: block_a(n, 64),
            lambda n: block_a(n, 64),
            block_b,
            lambda n: block_c(n, 128),
            lambda n: block_c(n, 160),
            lambda n: block_c(n, 160),
            lambda n: block_c(n, 192),
            block_d,
            block_e,
            block_e,
        ):
            m, ch = make(ch)
            layers.append(m)
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(ch, num_classes)
        for mod in self.modules():  # variance-preserving init, so the random logits depend on the input
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        h = self.features(x)
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))
