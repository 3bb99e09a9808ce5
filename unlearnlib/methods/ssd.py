"""SSD, Selective Synaptic Dampening (Foster, Schoepf and Brintrup, AAAI 2024; official code
if-loops/selective-synaptic-dampening, ``ssd.py``: ``ParameterPerturber``). No training:

1. Importance (a diagonal Fisher estimate): for the forget set D_f and for the whole training set
   D = D_r + D_f, with the model in eval mode, the squared gradient of each batch's mean
   cross-entropy, averaged over the batches (``calc_importance``).
2. Selection and dampening (``modify_weight``): every parameter whose forget importance exceeds
   ``alpha`` times its global importance is multiplied by ``beta = (lambda * global / forget) **
   exponent``, capped at 1 (``lower_bound``), so weights only shrink.

Defaults: the official ResNet-18/CIFAR settings (``src/forget_random_main.py``: lambda
(``dampening_constant``) 1, alpha (``selection_weighting``) 10, batches of 128; exponent 1 and
lower bound 1 in ``ssd_tuning``). It costs two passes of forward and backward (D_f and D), no
optimizer step.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..data import LabelledImages, to_float
from ..runtime import autocast
from .base import Outcome, register

__all__ = ["SSDConfig", "importance", "dampen"]


@dataclass
class SSDConfig:
    """SSD (see the module docstring); official defaults for ResNet-18 on CIFAR."""
    alpha: float = 10.0           # selection: forget importance > alpha * global importance
    lam: float = 1.0              # dampening constant lambda of beta = lambda * global / forget
    exponent: float = 1.0         # beta's exponent (official 1)
    lower_bound: float = 1.0      # beta is capped at this (official 1: never scale a weight up)
    batch_size: int = 128         # images per importance batch, D_f and D (official -b 128)
    fast: bool = True             # CUDA only: autocast

    RANGES: ClassVar[dict] = {"alpha": "(0, 1e6]", "lam": "(0, 1e6]", "exponent": "(0, 100]",
                              "lower_bound": "(0, 1e6]"}


def importance(model, data: LabelledImages, batch_size: int = 128, fast: bool = True) -> dict:
    """Parameter name -> mean over ``data``'s batches of the squared gradient of the batch's mean
    cross-entropy (official ``calc_importance``), with the model in eval mode (restored after)."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    imp = {n: torch.zeros_like(p) for n, p in params}
    was = model.training
    model.eval()
    batches = 0
    for s in range(0, len(data), batch_size):
        x = to_float(data.images[s:s + batch_size])
        model.zero_grad(set_to_none=True)
        with autocast(x.device, fast):
            loss = F.cross_entropy(model(x).float(), data.labels[s:s + batch_size])
        loss.backward()
        for n, p in params:
            if p.grad is not None:
                imp[n] += p.grad.detach().pow(2)
        batches += 1
    model.zero_grad(set_to_none=True)
    model.train(was)
    return {n: v / max(1, batches) for n, v in imp.items()}


@torch.no_grad()
def dampen(model, global_imp: dict, forget_imp: dict, alpha: float = 10.0, lam: float = 1.0,
           exponent: float = 1.0, lower_bound: float = 1.0) -> float:
    """Official ``modify_weight``, in place: where ``forget > alpha * global``, the parameter is
    multiplied by ``min(lower_bound, (lam * global / forget) ** exponent)``. Returns the share of
    all parameter entries that were dampened."""
    chosen = total = 0
    for n, p in model.named_parameters():
        if n not in forget_imp:
            continue
        g, f = global_imp[n], forget_imp[n]
        where = f > alpha * g
        beta = ((lam * g[where]) / f[where]).pow(exponent).clamp(max=lower_bound)
        p[where] = p[where] * beta
        chosen += int(where.sum())
        total += p.numel()
    return chosen / max(1, total)


@register("ssd", config=SSDConfig, label="SSD", order=90, family="after_scrub",
          source="Foster et al., AAAI 2024: dampen weights whose D_f Fisher importance exceeds alpha x "
                 "their D importance (if-loops/selective-synaptic-dampening ssd.py)")
def run_ssd(model, sets, cfg, ctx) -> Outcome:
    t0 = time.perf_counter()
    full = LabelledImages(torch.cat([sets.retain.images, sets.forget.images]),
                          torch.cat([sets.retain.labels, sets.forget.labels]))
    forget_imp = importance(model, sets.forget, cfg.batch_size, cfg.fast)
    global_imp = importance(model, full, cfg.batch_size, cfg.fast)
    share = dampen(model, global_imp, forget_imp, cfg.alpha, cfg.lam, cfg.exponent, cfg.lower_bound)
    row = {"epoch": 1, "dampened": share, "seconds": time.perf_counter() - t0}
    if ctx.on_epoch_end is not None:
        ctx.on_epoch_end(1, row)
    return Outcome(model.eval(), [row], False, None, 0.0)
