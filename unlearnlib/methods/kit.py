"""The NeurIPS 2023 unlearning starting kit's entry point, ``unlearning(net, retain, forget,
validation)``, on top of :func:`~unlearnlib.methods.unlearn`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from ..data import LabelledImages
from .api import unlearn

__all__ = ["unlearning"]


def _as_tensors(data, name) -> tuple[LabelledImages, Any]:
    """Tensors (x, y), a TensorDataset, a map-style Dataset, a Subset or a DataLoader."""
    from torch.utils.data import DataLoader, Dataset, Subset
    base = None
    if isinstance(data, Subset):
        base = (id(data.dataset), len(data.dataset), list(map(int, data.indices)))
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(torch.is_tensor(t) for t in data):
        x, y = data
    elif isinstance(data, DataLoader):
        xs, ys = zip(*[(b[0], b[1]) for b in data]) if len(data.dataset) else ((), ())
        x, y = (torch.cat(xs), torch.cat(ys)) if xs else (torch.zeros(0, 3, 1, 1), torch.zeros(0))
    elif isinstance(data, Dataset):
        items = [data[i] for i in range(len(data))]
        x = torch.stack([torch.as_tensor(it[0]) for it in items]) if items else torch.zeros(0, 3, 1, 1)
        y = torch.as_tensor([int(it[1]) for it in items])
    else:
        raise ValueError(f"{name} must be a (images, labels) tuple of tensors, a Dataset or a "
                         f"DataLoader, got {type(data).__name__}")
    return LabelledImages(x, torch.as_tensor(y).long().flatten()), base


def unlearning(net: nn.Module, retain, forget, validation, method: str = "scrub", seed: int = 0,
               **overrides) -> nn.Module:
    """The NeurIPS 2023 starting kit's shape: returns the unlearned copy of ``net``.

    ``retain``/``forget``/``validation`` are ``(images, labels)`` tensors, Datasets, Subsets or
    DataLoaders. Float images are fed to ``net`` as they are; uint8 images are scaled to [0, 1].
    Raises ``ValueError`` for an empty forget set, a forget set larger than its data set, and
    overlapping retain/forget examples.
    """
    r, rbase = _as_tensors(retain, "retain")
    f, fbase = _as_tensors(forget, "forget")
    v, _ = _as_tensors(validation, "validation")
    if len(f) == 0:
        raise ValueError("the forget set is empty: nothing to unlearn")
    if len(r) == 0:
        raise ValueError("the retain set is empty")
    if rbase and fbase and rbase[0] == fbase[0]:
        both = sorted(set(rbase[2]) & set(fbase[2]))
        if both:
            raise ValueError(f"retain and forget overlap in {len(both)} indices, e.g. {both[:5]}")
    if fbase and len(fbase[2]) > fbase[1]:
        raise ValueError(f"the forget set has {len(fbase[2])} examples, more than its data set ({fbase[1]})")
    rkeys = {hash(t.numpy().tobytes()) for t in r.images.cpu()}
    dup = sum(hash(t.numpy().tobytes()) in rkeys for t in f.images.cpu())
    if dup:
        raise ValueError(f"{dup} forget examples also appear in the retain set: retain and forget "
                         f"must not overlap")
    split = _KitSplit(r, f, v, seed)
    return unlearn(method, net, split, seed=seed, **overrides).model


@dataclass
class _KitSplit:
    retain: LabelledImages
    forget: LabelledImages
    test: LabelledImages
    seed: int
