"""Bad Teacher (Chundawat, Tarun, Mandal and Kankanhalli, "Can Bad Teaching Induce Forgetting?
Unlearning in Deep Networks Using an Incompetent Teacher", AAAI 2023; official code
vikram2000b/bad-teaching-unlearning, ``unlearn.py``).

The student starts as the original model and distils, on D_f and a random share of D_r together,
from two teachers: on a retain example from the competent teacher (the original model), on a
forget example from the incompetent one (the same architecture, randomly initialised). The loss
is the official ``UnlearnerLoss``: KL(teacher || student) at temperature ``T`` with the teacher
chosen per example, averaged over every element (``F.kl_div``'s legacy ``reduction="mean"``, which
the official code uses: the batch-mean KL divided by the number of classes). One epoch of Adam.

Defaults: the official ``blindspot_unlearner`` settings (retain share 0.3, one epoch, Adam at lr
1e-4, batch 256, KL temperature 1).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..data import LabelledImages
from ..forward import Forward
from ..runtime import autocast, batch_sizes, device_of, make_generator, make_scaler
from ..train import fit, run_epoch
from .base import Outcome, register, resume_key

__all__ = ["BadTeacherConfig", "bad_teacher_targets", "incompetent_teacher"]


@dataclass
class BadTeacherConfig:
    """Bad Teacher (see the module docstring); the official defaults."""
    epochs: int = 1               # passes over D_f + the retain share (official 1)
    batch_size: int = 256         # images per step (official)
    lr: float = 1e-4              # Adam learning rate (official)
    T: float = 1.0                # KL temperature (official KL_temperature)
    retain_fraction: float = 0.3  # share of D_r drawn (with the seed) into the unlearning data (official 0.3)
    fast: bool = True             # CUDA only: autocast
    compile: str = "off"          # torch.compile mode of the student's forward (config.COMPILE_MODES)
    channels_last: bool = False  # channels_last weights on any device (a CUDA fast run always is); see config.hashable_config

    RANGES: ClassVar[dict] = {"T": "(0, 100]", "retain_fraction": "[0, 1]"}


def bad_teacher_targets(competent_logits, incompetent_logits, is_forget, T: float = 1.0) -> torch.Tensor:
    """Per example, the teacher distribution the student imitates: softmax(incompetent / T) for a
    forget example (``is_forget`` true), softmax(competent / T) for a retain one."""
    f = is_forget.to(competent_logits.dtype).unsqueeze(1)
    return f * F.softmax(incompetent_logits / T, 1) + (1 - f) * F.softmax(competent_logits / T, 1)


def incompetent_teacher(model, seed: int):
    """A copy of ``model``'s architecture with every layer's parameters re-initialised (seeded)."""
    net = copy.deepcopy(model)
    torch.manual_seed(seed)
    for m in net.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return net.eval()


@register("bad_teacher", config=BadTeacherConfig, label="Bad Teacher", order=100, family="after_scrub",
          source="Chundawat et al., AAAI 2023: distil from the original on D_r and from a random network on "
                 "D_f (vikram2000b/bad-teaching-unlearning UnlearnerLoss)")
def run_bad_teacher(model, sets, cfg, ctx) -> Outcome:
    dev = device_of(model)
    gen = make_generator(ctx.seed, dev)
    n_keep = int(round(cfg.retain_fraction * len(sets.retain)))
    keep = torch.randperm(len(sets.retain), device=dev, generator=gen)[:n_keep].sort().values
    data = LabelledImages(torch.cat([sets.forget.images, sets.retain.images[keep]]),
                          torch.cat([sets.forget.labels, sets.retain.labels[keep]]))
    is_forget = torch.zeros(len(data), dtype=torch.bool, device=dev)
    is_forget[:len(sets.forget)] = True
    competent = copy.deepcopy(model).eval()
    incompetent = incompetent_teacher(model, ctx.seed + 7)
    for net in (competent, incompetent):
        for p in net.parameters():
            p.requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scaler = make_scaler(dev, cfg.fast)
    fwd = Forward(model, mode=cfg.compile)

    def objective(_, b, __):
        with torch.no_grad(), autocast(dev, cfg.fast):
            target = bad_teacher_targets(competent(b.x).float(), incompetent(b.x).float(), is_forget[b.idx], cfg.T)
        log_student = F.log_softmax(fwd.logits(b.x).float() / cfg.T, 1)
        loss = (torch.xlogy(target, target) - target * log_student).mean()  # F.kl_div(..., "mean")
        return loss, loss

    key = "" if ctx.resume is None else resume_key(cfg, ctx.seed, sets, model)

    def epoch_fn(_):
        model.train()
        return {"loss": run_epoch(model, opt, data, cfg.batch_size, objective, gen, fast=cfg.fast,
                                  scaler=scaler)["loss"]}

    with fwd:
        fwd.warmup(data, batch_sizes(len(data), cfg.batch_size), cfg.fast)
        history, diverged = fit(model, opt, cfg.epochs, epoch_fn, gen, resume=ctx.resume, resume_key=key,
                                on_epoch_end=ctx.on_epoch_end, scaler=scaler)
    return Outcome(model, history, diverged, None, fwd.compile_seconds)
