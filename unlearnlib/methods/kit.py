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


def _items(dataset, indices):
    items = [dataset[i] for i in indices]
    x = torch.stack([torch.as_tensor(it[0]) for it in items]) if items else torch.zeros(0, 3, 1, 1)
    return x, torch.as_tensor([torch.as_tensor(it[1]).item() for it in items])


def _as_tensors(data, name) -> tuple[LabelledImages, Any]:
    """Tensors (x, y), a TensorDataset, a map-style Dataset, a Subset or a DataLoader. A
    DataLoader is read through its dataset and sampler, never its batches, so ``drop_last`` or
    the batch size cannot leave examples out."""
    from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset
    loader = data if isinstance(data, DataLoader) else None
    if loader is not None:
        data = loader.dataset
    base = None
    if isinstance(data, Subset):
        base = (id(data.dataset), len(data.dataset), list(map(int, data.indices)))
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(torch.is_tensor(t) for t in data):
        x, y = data
    elif isinstance(data, IterableDataset):
        if loader is not None and loader.drop_last:
            raise ValueError(f"the {name} DataLoader iterates an IterableDataset with drop_last=True: its last "
                             f"batch would never be seen; pass drop_last=False")
        if loader is None:  # single examples
            items = list(data)
            x, y = _items(items, range(len(items)))
        else:  # batches
            batches = [(b[0], b[1]) for b in loader]
            x = torch.cat([b[0] for b in batches]) if batches else torch.zeros(0, 3, 1, 1)
            y = torch.cat([torch.as_tensor(b[1]).flatten() for b in batches]) if batches else torch.zeros(0)
    elif isinstance(data, Dataset):
        # the sampler holds every index (drop_last lives in the batch sampler, which is not read)
        indices = list(loader.sampler) if loader is not None else range(len(data))
        x, y = _items(data, indices)
    else:
        raise ValueError(f"{name} must be a (images, labels) tuple of tensors, a Dataset or a "
                         f"DataLoader, got {type(data).__name__}")
    y = torch.as_tensor(y).flatten()
    if y.is_floating_point() or y.is_complex():
        bad = y[~torch.isfinite(y) | (y != y.round())] if y.is_floating_point() else y
        if len(bad):
            raise ValueError(f"the {name} labels must be whole class indices, got {len(bad)} others, e.g. "
                             f"{bad[:3].tolist()}")
    if x.ndim != 4:
        raise ValueError(f"the {name} images must be N x C x H x W, got shape {tuple(x.shape)}")
    return LabelledImages(x, y.long()), base


def _canonical(images: torch.Tensor) -> list[bytes]:
    """Each image in one form, whatever its dtype: pixel values in [0, 1] quantised to 1/255."""
    x = images.detach().cpu()
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    return [t.numpy().tobytes() for t in (x * 255).round().to(torch.int32)]


def unlearning(net: nn.Module, retain, forget, validation, method: str = "scrub", seed: int = 0,
               **overrides) -> nn.Module:
    """The NeurIPS 2023 starting kit's shape: returns the unlearned copy of ``net``.

    ``retain``/``forget``/``validation`` are ``(images, labels)`` tensors, Datasets, Subsets or
    DataLoaders (read through their dataset and sampler: every example is used). Float images are
    fed to ``net`` as they are; uint8 images are scaled to [0, 1]. Either every forget example is
    unlearned, or ``ValueError`` is raised before any compute: an empty set, a forget set larger
    than its data set, retain and forget sharing an example (compared as pixels in one canonical
    form, whatever the dtypes), non-integer labels, labels outside the network's classes, or
    non-finite pixels.
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
    rkeys = set(_canonical(r.images))
    dup = sum(k in rkeys for k in _canonical(f.images))
    if dup:
        raise ValueError(f"{dup} forget examples also appear in the retain set: retain and forget "
                         f"must not overlap")
    split = _KitSplit(r, f, v, seed, validation=v)  # the kit's validation set serves every choice
    return unlearn(method, net, split, seed=seed, **overrides).model


@dataclass
class _KitSplit:
    retain: LabelledImages
    forget: LabelledImages
    test: LabelledImages
    seed: int
    validation: LabelledImages | None = None
