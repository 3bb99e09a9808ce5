"""The CIFAR ResNet-18 used by the paper, with named feature taps.

The network is the usual CIFAR variant (3x3 stem, stride 1, no max-pool) with four stages
``layer1`` .. ``layer4`` and adaptive average pooling, so the same weights shape serves 32x32
CIFAR-10 and 64x64 Tiny-ImageNet. At ``width=1`` it has 11,173,962 parameters for 10 classes.
``width`` scales every channel count, for the CPU quick profile.

Inputs are float images in [0, 1]; per-channel normalisation is the model's first module, so
attribution methods (Captum) and users see pixels, not z-scores.

Feature taps follow torchdistill: forward hooks on named modules record outputs without
touching them (:class:`FeatureTap`).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["build_model", "ResNet18", "FeatureTap", "forward_with_features", "ARCHITECTURES",
           "TAP_LAYERS", "count_parameters"]

ARCHITECTURES = ("resnet18",)
TAP_LAYERS = ("layer1", "layer2", "layer3", "layer4")


class Normalize(nn.Module):
    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))  # never in place: taps keep their tensors intact
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, num_classes: int, width: float = 1.0,
                 mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.25, 0.25, 0.25)):
        super().__init__()
        c = [max(1, int(round(ch * width))) for ch in (64, 128, 256, 512)]
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(3, c[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c[0])
        self.layer1 = self._stage(c[0], c[0], 1)
        self.layer2 = self._stage(c[0], c[1], 2)
        self.layer3 = self._stage(c[1], c[2], 2)
        self.layer4 = self._stage(c[2], c[3], 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c[3], num_classes)

    @staticmethod
    def _stage(cin, cout, stride):
        return nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1))

    def forward(self, x):
        x = self.normalize(x)
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def build_model(arch: str = "resnet18", num_classes: int = 10, width: float = 1.0,
                mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.25, 0.25, 0.25)
                ) -> ResNet18:
    """Build the CIFAR ResNet-18. ``mean``/``std`` are the data set's channel statistics."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; allowed: {', '.join(ARCHITECTURES)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width <= 4:
        raise ValueError(f"width must be a number in (0, 4], got {width!r}")
    return ResNet18(num_classes, float(width), mean, std)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class FeatureTap:
    """Record the outputs of named modules with forward hooks (torchdistill's approach).

    Use as a context manager around forward passes; ``tap.features`` maps each name to the
    latest output of that module. Hooks return ``None``, so activations are never modified.
    """

    def __init__(self, model: nn.Module, names: Iterable[str] = TAP_LAYERS):
        self.names = tuple(names)
        modules = dict(model.named_modules())
        missing = [n for n in self.names if n not in modules]
        if missing:
            raise ValueError(f"unknown feature layer(s) {missing}; the model has e.g. "
                             f"{[n for n in modules if n and '.' not in n]}")
        self._modules = [modules[n] for n in self.names]
        self._handles: list = []
        self.features: dict[str, torch.Tensor] = {}

    def _hook(self, name):
        def hook(_module, _inputs, output):
            self.features[name] = output
        return hook

    def __enter__(self):
        self._handles = [m.register_forward_hook(self._hook(n))
                         for n, m in zip(self.names, self._modules)]
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []
        return False

    def take(self) -> list[torch.Tensor]:
        """The recorded features in the order of ``names``; clears the record."""
        out = [self.features[n] for n in self.names]
        self.features = {}
        return out


def forward_with_features(model: nn.Module, x: torch.Tensor, names: Iterable[str] = TAP_LAYERS
                          ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One forward pass returning the logits and the outputs of the named layers."""
    with FeatureTap(model, names) as tap:
        logits = model(x)
        feats = dict(tap.features)
    return logits, feats
