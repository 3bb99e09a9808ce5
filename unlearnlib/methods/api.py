"""``unlearn()``: one entry point for every registered method."""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..checkpoints import check_model_classes, check_model_split
from ..presets import load_preset
from ..runtime import device_of, sync
from ..splits import validate_seed
from .base import Context, Sets, default_config, get_method

__all__ = ["unlearn", "UnlearnResult"]


@dataclass
class UnlearnResult:
    method: str
    model: nn.Module              # the unlearned model (a new object; eval mode)
    history: list                 # one dict per epoch (max_loss/min_loss for SCRUB, loss otherwise)
    seconds: float                # wall seconds of the method, GPU-synchronised, compilation excluded
    config: dict                  # the config that ran
    diverged: bool = False        # a loss went non-finite: weights are the last finite epoch's
    rewound_epoch: int | None = None  # SCRUB+R: the epoch returned
    compile_seconds: float = 0.0  # seconds spent compiling (config ``compile``), not in ``seconds``


def _check_data(split, n_classes: int | None) -> None:
    """Finite pixels and labels within the model's ``n_classes`` in retain and forget, before compute."""
    for name in ("retain", "forget"):
        d = getattr(split, name)
        if d.images.is_floating_point():
            bad = int((~torch.isfinite(d.images)).sum())
            if bad:
                raise ValueError(f"the {name} set has {bad} non-finite pixel value(s) (NaN or inf)")
        if len(d) and (int(d.labels.min()) < 0 or (n_classes is not None and int(d.labels.max()) >= n_classes)):
            raise ValueError(f"the {name} labels must lie in [0, {n_classes}) for this {n_classes}-class model, "
                             f"got values from {int(d.labels.min())} to {int(d.labels.max())}")


def unlearn(method: str, model: nn.Module, split, config=None, *, seed: int | None = None,
            resume=None, on_epoch_end=None, preset: str | None = None, meta: dict | None = None,
            **overrides) -> UnlearnResult:
    """Unlearn ``split.forget`` from ``model`` with ``method``; the original is left untouched.

    ``config`` is the method's config dataclass (default: its defaults); ``overrides`` replace
    single fields, e.g. ``unlearn("scrub", net, split, lr=1e-3, beta=0)``. Names, types and
    ranges are checked before any compute. ``seed`` defaults to ``split.seed``. ``preset`` names
    a preset written by a sweep (e.g. ``"rb-resnet18"``): its values come first, then ``overrides``.
    ``meta`` is the checkpoint metadata of ``model`` (as :func:`~unlearnlib.checkpoints.load_checkpoint`
    returns it): a model made on another split is refused.
    """
    rec = get_method(method)
    if preset is not None:
        overrides = {**load_preset(preset, method), **overrides}
    if config is not None:
        if not isinstance(config, rec.config):
            raise ValueError(f"config for {method!r} must be a {rec.config.__name__}, "
                             f"got {type(config).__name__}")
        overrides = {**dataclasses.asdict(config), **overrides}
    cfg = default_config(method, **overrides)
    if meta is not None:
        check_model_split(meta, split, "to unlearn")
    _check_data(split, check_model_classes(model, split, "to unlearn"))
    seed = validate_seed(split.seed if seed is None else seed)
    for name in ("retain", "forget"):
        if len(getattr(split, name)) == 0:
            raise ValueError(f"the {name} set is empty")
    if rec.check is not None:
        rec.check(model)
    dev = device_of(model)
    val = getattr(split, "validation", None)
    sets = Sets(*(getattr(split, n).to(dev) for n in ("retain", "forget", "test")),
                validation=val.to(dev) if val is not None else None)
    work = copy.deepcopy(model)
    # a checkpoint loads contiguous; the CUDA fast path is channels_last, and so is a config that asks
    # for it on any device (measured on 2 CPU cores, width 1/8, batch 32, eager: 1.25-1.35x the
    # contiguous training images/s with one thread, 1.15x with two; see Profile "paper-cpu")
    if (dev.type == "cuda" and cfg.fast) or getattr(cfg, "channels_last", False):
        work = work.to(memory_format=torch.channels_last)
    sync(dev)
    t0 = time.perf_counter()
    out = rec.run(work, sets, cfg, Context(seed, resume, on_epoch_end))
    sync(dev)
    seconds = time.perf_counter() - t0 - out.compile_seconds
    out.model.eval()
    return UnlearnResult(method, out.model, list(out.history), seconds, dataclasses.asdict(cfg), out.diverged,
                         out.rewound_epoch, out.compile_seconds)
