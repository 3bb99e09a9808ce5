"""Random Labels (RL): finetune on D_f with labels redrawn from the other classes, then on D_r.

Golatkar et al. 2020 describe relabelling forgotten data; the loop here is the official one of
the SalUn codebase (OPTML-Group/Unlearn-Saliency, ``Classification/unlearn/RL.py``, CIFAR-10
branch), which the l1-sparse codebase shares: each epoch is one pass over D_f with random labels,
then one pass over D_r with the true ones, with SGD (momentum 0.9, weight decay 5e-4, constant lr).
SalUn (:mod:`.salun`) is this loop with the gradients masked to the salient weights.

Deviation: the official code draws each forget label uniformly from *all* classes, so about 1/C
of D_f keeps its own label; here a label is drawn uniformly from the *other* classes (a redrawn
label always differs from the true one), fresh every epoch from the run's seeded generator.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data import LabelledImages
from ..forward import Forward
from ..runtime import batch_sizes, device_of, make_generator, make_optimizer, make_scaler
from ..train import fit, run_epoch
from .base import Outcome, register, resume_key
from .baselines import ce

__all__ = ["RandomLabelsConfig", "relabel_other_classes", "num_classes_of", "rl_loop"]


@dataclass
class RandomLabelsConfig:
    """Random Labels (RL). Defaults: the SalUn codebase's CIFAR-10 unlearning settings
    (``arg_parser.py``: batch_size 256, momentum 0.9, weight_decay 5e-4, unlearn_epochs 10; the lr
    is SalUn's CIFAR-10 10%-random example, 0.013, used for RL alike)."""
    epochs: int = 10              # each: a pass over D_f (random labels), then over D_r
    batch_size: int = 256         # images per step, both passes (official batch_size)
    lr: float = 0.013             # constant SGD learning rate (official unlearn_lr of the example)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    fast: bool = True             # CUDA only: autocast, fused SGD
    compile: str = "off"          # torch.compile mode of the forward (config.COMPILE_MODES)
    channels_last: bool = False  # channels_last weights on any device (a CUDA fast run always is); see config.hashable_config


def num_classes_of(model, data: LabelledImages) -> int:
    """The model's number of outputs (``fc.out_features``, else from one forward pass)."""
    fc = getattr(model, "fc", None)
    if fc is not None and hasattr(fc, "out_features"):
        return int(fc.out_features)
    from ..train import predict_logits
    return int(predict_logits(model, data.images[:1]).shape[1])


def relabel_other_classes(labels: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """Each label replaced by one drawn uniformly from the *other* ``num_classes - 1`` classes:
    ``(y + k) mod C`` with ``k`` uniform in 1..C-1."""
    if num_classes < 2:
        raise ValueError(f"random labels need at least 2 classes, got {num_classes}")
    k = torch.randint(1, num_classes, labels.shape, device=labels.device, generator=generator)
    return (labels + k) % num_classes


def rl_loop(model, sets, cfg, ctx, mask: dict | None = None) -> Outcome:
    """RL's epochs (see the module docstring). With ``mask`` (parameter name -> 0/1 tensor), only
    the masked-in weights move: weight decay and the gradient are applied to them alone, so the
    others (and their momentum) stay exactly as they were (SalUn)."""
    dev = device_of(model)
    num_classes = num_classes_of(model, sets.forget)
    wd = 0.0 if mask is not None else cfg.weight_decay  # masked: decay applied in after_backward
    opt = make_optimizer(model, cfg.lr, cfg.momentum, wd, fast=cfg.fast)
    scaler = make_scaler(dev, cfg.fast)
    gen = make_generator(ctx.seed, dev)
    lgen = make_generator(ctx.seed + 104729, dev)  # the random labels' own stream
    fwd = Forward(model, mode=cfg.compile)
    params = dict(model.named_parameters())

    def masked(m):
        for name, p in params.items():
            if p.grad is not None and name in mask:
                p.grad.add_(p.detach(), alpha=cfg.weight_decay).mul_(mask[name])

    after = masked if mask is not None else None
    objective = lambda _, b, __: (ce(fwd, b),) * 2
    key = "" if ctx.resume is None else resume_key(cfg, ctx.seed, sets, model)

    def epoch_fn(_):
        model.train()
        forget = LabelledImages(sets.forget.images, relabel_other_classes(sets.forget.labels, num_classes, lgen))
        f = run_epoch(model, opt, forget, cfg.batch_size, objective, gen, fast=cfg.fast, scaler=scaler,
                      after_backward=after)
        r = run_epoch(model, opt, sets.retain, cfg.batch_size, objective, gen, fast=cfg.fast, scaler=scaler,
                      after_backward=after)
        return {"forget_loss": f["loss"], "loss": r["loss"]}

    with fwd:
        fwd.warmup(sets.retain, batch_sizes(len(sets.retain), cfg.batch_size) | batch_sizes(len(sets.forget), cfg.batch_size),
                   cfg.fast)
        history, diverged = fit(model, opt, cfg.epochs, epoch_fn, gen, resume=ctx.resume, resume_key=key,
                                on_epoch_end=ctx.on_epoch_end, nan_keys=("loss", "forget_loss"),
                                extra_generators=(lgen,), scaler=scaler)
    return Outcome(model, history, diverged, None, fwd.compile_seconds)


@register("random_labels", config=RandomLabelsConfig, label="Random Labels", order=70, family="after_scrub",
          source="Golatkar et al. 2020 (relabelling); the official loop of OPTML-Group/Unlearn-Saliency "
                 "Classification/unlearn/RL.py: D_f with random labels, then D_r")
def run_random_labels(model, sets, cfg, ctx) -> Outcome:
    return rl_loop(model, sets, cfg, ctx)
