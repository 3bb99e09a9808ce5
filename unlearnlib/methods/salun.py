"""SalUn (Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency in
both Image Classification and Generation", ICLR 2024; official code OPTML-Group/Unlearn-Saliency).

1. Weight saliency (``Classification/generate_mask.py``, ``save_gradient_ratio``): with the model
   in eval mode, the gradient of the *negated* cross-entropy on D_f is summed over its batches;
   the saliency of a weight is the absolute value of that sum. Ranked over all parameters of the
   network together, the top ``fraction`` (official ``with_0.5.pt``: 50%) form the mask.
2. Random Labels (:mod:`.random_labels`) with the gradients multiplied by the mask before each step
   (the loop's post-backward hook), weight decay applied to the masked-in weights only: the other
   weights, and their momentum, never move.

Defaults: the README's CIFAR-10 example of 10% random forgetting (10 epochs; lr 0.013) with the
codebase's batch 256, momentum 0.9 and weight decay 5e-4. Deviations: the forget labels are drawn
from the other classes (see :mod:`.random_labels`); an older revision of ``generate_mask.py`` also
stepped an optimizer while summing the gradients (the model moved during the mask's computation),
the released one (commit ac880a2) does not, and neither does this one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..data import to_float
from ..runtime import autocast
from .base import Outcome, register
from .random_labels import RandomLabelsConfig, rl_loop

__all__ = ["SalUnConfig", "salun_mask"]


@dataclass
class SalUnConfig(RandomLabelsConfig):
    """SalUn: Random Labels restricted to the salient weights (see the module docstring)."""
    fraction: float = 0.5         # share of all weights kept by the mask (official threshold 0.5)
    mask_batch_size: int = 256    # forget images per gradient batch of the mask (official batch_size)

    RANGES: ClassVar[dict] = {"fraction": "(0, 1]", "mask_batch_size": "[1, 1000000]"}


def salun_mask(model, forget, batch_size: int = 256, fraction: float = 0.5, fast: bool = True) -> dict:
    """SalUn's hard mask: parameter name -> 0/1 tensor (the parameter's dtype) marking the top
    ``fraction`` of all weights by |sum over D_f's batches of grad(-CE)|, the model in eval mode.
    The model's weights and mode are left as they were (its ``.grad`` are cleared)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    sums = {n: torch.zeros_like(p) for n, p in params}
    was = model.training
    model.eval()
    for s in range(0, len(forget), batch_size):
        x = to_float(forget.images[s:s + batch_size])
        model.zero_grad(set_to_none=True)
        with autocast(x.device, fast):
            loss = -F.cross_entropy(model(x).float(), forget.labels[s:s + batch_size])
        loss.backward()
        for n, p in params:
            if p.grad is not None:
                sums[n] += p.grad.detach()
    model.zero_grad(set_to_none=True)
    model.train(was)
    flat = torch.cat([v.abs().flatten() for v in sums.values()])
    keep = int(len(flat) * fraction)
    chosen = torch.zeros(len(flat), dtype=torch.bool, device=flat.device)
    chosen[torch.argsort(flat, descending=True, stable=True)[:keep]] = True
    out, start = {}, 0
    for n, p in params:
        out[n] = chosen[start:start + p.numel()].view_as(p).to(p.dtype)
        start += p.numel()
    return out


@register("salun", config=SalUnConfig, label="SalUn", order=80, family="after_scrub",
          source="Fan et al., ICLR 2024: weight-saliency mask from |grad of -CE(D_f)|, then Random Labels "
                 "on the salient weights (OPTML-Group/Unlearn-Saliency)")
def run_salun(model, sets, cfg, ctx) -> Outcome:
    mask = salun_mask(model, sets.forget, cfg.mask_batch_size, cfg.fraction, cfg.fast)
    return rl_loop(model, sets, cfg, ctx, mask=mask)
