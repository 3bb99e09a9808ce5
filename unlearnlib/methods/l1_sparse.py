"""l1-sparse (Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023; official
code OPTML-Group/Unlearn-Sparse, ``FT_prune`` / ``FT_l1``, shared by the SalUn codebase's
``unlearn/FT.py``): Finetune on D_r with an l1 penalty on all weights,

    loss = CE(D_r) + gamma_t * ||theta||_1,   gamma_t = gamma * (1 - t / epochs)  (t = 0, 1, ...),

the weight decaying linearly to zero over the epochs (``current_alpha`` of the official loop;
``no_l1_epochs`` = 0). Defaults: the official example's lr 0.01 and 10 epochs with the codebase's
batch 256, momentum 0.9 and weight decay 5e-4. ``gamma`` (official ``--alpha``) is not fixed by the
official README (its command passes ``--alpha ${alpha}``); 5e-4 here is our choice, to be tuned.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import Outcome, register
from .baselines import ce, simple_loop

__all__ = ["L1SparseConfig", "l1_penalty"]


@dataclass
class L1SparseConfig:
    """l1-sparse (see the module docstring)."""
    epochs: int = 10              # passes over D_r (official unlearn_epochs)
    batch_size: int = 256         # retain images per step (official batch_size)
    lr: float = 0.01              # constant SGD learning rate (official example)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    gamma: float = 5e-4           # l1 weight at epoch 0, decayed linearly to 0 (official --alpha; ours)
    fast: bool = True             # CUDA only: autocast, fused SGD
    compile: str = "off"          # torch.compile mode of the forward (config.COMPILE_MODES)
    channels_last: bool = False  # channels_last weights on any device (a CUDA fast run always is); see config.hashable_config

    RANGES: ClassVar[dict] = {"gamma": "[0, 1]"}


def l1_penalty(model, gamma) -> torch.Tensor:
    """``gamma * ||theta||_1`` over every parameter (official ``l1_regularization``); its gradient
    is ``gamma * sign(theta)``."""
    # per parameter, then summed: no flattened copy, and any memory format (channels_last on a GPU)
    return gamma * torch.stack([p.abs().sum() for p in model.parameters()]).sum()


@register("l1_sparse", config=L1SparseConfig, label="l1-sparse", order=110, family="after_scrub",
          source="Jia et al., NeurIPS 2023: CE(D_r) + gamma_t ||theta||_1, gamma_t decayed linearly "
                 "(OPTML-Group/Unlearn-Sparse FT_prune)")
def run_l1_sparse(model, sets, cfg, ctx) -> Outcome:
    now = {"gamma": cfg.gamma}

    def start(epoch):
        now["gamma"] = cfg.gamma * (1 - epoch / cfg.epochs)

    def objective(fwd, b, _):
        loss = ce(fwd, b)
        total = loss + l1_penalty(model, now["gamma"])
        return total, loss  # the history reports CE(D_r)

    return simple_loop(model, sets.retain, cfg, ctx, objective, on_epoch_start=start)
