"""The paper's baselines (section 2): Retrain, Finetune, NegGrad, NegGrad+."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch.nn.functional as F

from ..config import TrainConfig
from ..forward import Forward
from ..models import ResNet18, build_model
from ..runtime import batch_sizes, device_of, make_generator, make_optimizer, make_scaler, seed_everything
from ..train import fit, run_epoch, train
from .base import Outcome, register, resume_key

__all__ = ["RetrainConfig", "FinetuneConfig", "NegGradConfig", "NegGradPlusConfig"]


@dataclass
class RetrainConfig(TrainConfig):
    """Retrain: exactly the original model's recipe (TrainConfig), run on D_r only."""


@dataclass
class FinetuneConfig:
    """Finetune: CE on D_r from the original weights. Defaults: the official CIFAR-10 settings
    (meghdadk/SCRUB ``MIA_experiments.ipynb``: ``finetune(lr=0.04, epochs=10)`` with plain SGD,
    ``weight_decay=0.0``, RepDistiller's ``train_vanilla``); RC: ``official["rc"]``."""
    epochs: int = 10              # passes over D_r (official ft_epochs)
    batch_size: int = 32          # retain images per step (official retain_bs)
    lr: float = 0.04              # constant SGD learning rate (official ft_lr)
    momentum: float = 0.0         # plain SGD, as the official torch.optim.SGD(lr=lr, weight_decay=0.0)
    weight_decay: float = 0.0
    fast: bool = True             # CUDA only: bf16 autocast, fused SGD
    compile: str = "off"          # torch.compile mode of the forward (config.COMPILE_MODES)
    channels_last: bool = False  # channels_last weights on any device (a CUDA fast run always is); see config.hashable_config


@dataclass
class NegGradConfig:
    """NegGrad, eq. (1): w <- w + lr * grad CE(D_f). A weak baseline that degrades quickly. The
    official code has no plain NegGrad run (its "NegGrad" is NegGrad+); these settings are ours."""
    epochs: int = 5               # passes over D_f
    batch_size: int = 16          # forget images per step
    lr: float = 0.001             # constant SGD learning rate (ascent)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    fast: bool = True
    compile: str = "off"
    channels_last: bool = False  # channels_last weights on any device (a CUDA fast run always is); see config.hashable_config


@dataclass
class NegGradPlusConfig:
    """NegGrad+, eq. (2): per step ``alpha * CE(retain) - (1 - alpha) * CE(forget)`` (the official
    ``train_negrad`` loop). Defaults: the official CIFAR-10 settings (``MIA_experiments.ipynb``:
    ng_alpha 0.9999, ng_epochs 5, ng_lr 0.01, plain SGD without weight decay, batches 32 + 16);
    RC: ``official["rc"]``."""
    epochs: int = 5               # passes over D_r; each retain batch is paired with a forget batch
    batch_size: int = 32          # retain images per step
    forget_batch_size: int = 16   # forget images per step (D_f is cycled)
    alpha: float = 0.9999         # weight of the retain loss (official ng_alpha)
    lr: float = 0.01              # official ng_lr
    momentum: float = 0.0         # plain SGD (official)
    weight_decay: float = 0.0
    fast: bool = True
    compile: str = "off"
    channels_last: bool = False  # channels_last weights on any device (a CUDA fast run always is); see config.hashable_config

    RANGES: ClassVar[dict] = {"alpha": "[0, 1]"}


def arch_kwargs(model) -> dict:
    """The arguments that rebuild ``model``'s architecture (Retrain trains it from scratch)."""
    if not isinstance(model, ResNet18):
        raise ValueError("method 'retrain' needs an unlearnlib ResNet18 (it rebuilds the "
                         "architecture); for your own network, train it yourself on the retain set")
    return {"num_classes": model.fc.out_features, "width": model.conv1.out_channels / 64,
            "mean": model.normalize.mean.flatten().tolist(), "std": model.normalize.std.flatten().tolist()}


@register("retrain", config=RetrainConfig, label="Retrain", order=0, family="reference", train_recipe=True,
          check=arch_kwargs, source="paper section 2.1: the original recipe from scratch on D_r (the gold standard)")
def run_retrain(model, sets, cfg, ctx) -> Outcome:
    arch = arch_kwargs(model)
    seed_everything(ctx.seed)
    fresh = build_model(**arch).to(device_of(model))
    tcfg = TrainConfig(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(TrainConfig)})
    history = train(fresh, sets.retain.images, sets.retain.labels, tcfg, seed=ctx.seed, resume=ctx.resume,
                    on_epoch_end=ctx.on_epoch_end)
    return Outcome(fresh, list(history), False, None, history.compile_seconds)


def ce(fwd, b):
    """Cross-entropy of the model behind ``fwd`` on batch ``b``."""
    return F.cross_entropy(fwd.logits(b.x).float(), b.y)


def simple_loop(model, data, cfg, ctx, objective, paired=None, paired_batch_size=0, *,
                after_backward=None, on_epoch_start=None) -> Outcome:
    """``cfg.epochs`` passes of ``objective(fwd, batch, paired_batch) -> (loss, report)`` over
    ``data`` with constant-lr SGD (Finetune, NegGrad, NegGrad+, l1-sparse); ``paired`` is cycled
    alongside. ``after_backward(model)`` runs between backward and the step (a gradient mask);
    ``on_epoch_start(epoch)`` (from 0) before each epoch (a schedule)."""
    opt = make_optimizer(model, cfg.lr, cfg.momentum, cfg.weight_decay, fast=cfg.fast)
    scaler = make_scaler(device_of(model), cfg.fast)
    gen = make_generator(ctx.seed, device_of(model))
    pgen = make_generator(ctx.seed + 7919, device_of(model)) if paired is not None else None
    fwd = Forward(model, mode=cfg.compile)
    key = "" if ctx.resume is None else resume_key(cfg, ctx.seed, [data] + ([paired] if paired is not None else []), model)

    def epoch_fn(epoch):
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        model.train()
        return {"loss": run_epoch(model, opt, data, cfg.batch_size, lambda _, b, pb: objective(fwd, b, pb),
                                  gen, paired=paired, paired_batch_size=paired_batch_size,
                                  paired_generator=pgen, fast=cfg.fast, scaler=scaler,
                                  after_backward=after_backward)["loss"]}

    sizes = batch_sizes(len(data), cfg.batch_size)
    if paired is not None:
        sizes |= batch_sizes(len(paired), paired_batch_size)
    with fwd:
        fwd.warmup(max(data, paired if paired is not None else data, key=len), sizes, cfg.fast)
        history, diverged = fit(model, opt, cfg.epochs, epoch_fn, gen, resume=ctx.resume,
                                resume_key=key, on_epoch_end=ctx.on_epoch_end,
                                extra_generators=(pgen,) if pgen is not None else (), scaler=scaler)
    return Outcome(model, history, diverged, None, fwd.compile_seconds)


# large_scale_ictest.ipynb: finetune(lr=0.01, epochs=10) on retain batches of 64 (ft_bs)
@register("finetune", config=FinetuneConfig, label="Finetune", order=10, family="baseline",
          official={"rc": {"lr": 0.01, "epochs": 10, "batch_size": 64, "momentum": 0.0, "weight_decay": 0.0}},
          source="paper section 2.2: cross-entropy on D_r from the original weights")
def run_finetune(model, sets, cfg, ctx) -> Outcome:
    return simple_loop(model, sets.retain, cfg, ctx, lambda fwd, b, _: (ce(fwd, b),) * 2)


@register("neggrad", config=NegGradConfig, label="NegGrad", order=20, family="baseline",
          source="paper eq. (1), section 2.3: gradient ascent on CE(D_f)")
def run_neggrad(model, sets, cfg, ctx) -> Outcome:
    def objective(fwd, b, _):
        loss = ce(fwd, b)
        return -loss, loss  # eq. (1): ascend the forget loss; history reports CE(D_f)
    return simple_loop(model, sets.forget, cfg, ctx, objective)


# large_scale_ictest.ipynb: ng_alpha 0.9999, ng_epochs 10, ng_lr 0.01, retain batches of 128 (ng_bs),
# forget batches of 32 (forget_bs)
@register("neggrad_plus", config=NegGradPlusConfig, label="NegGrad+", order=30, family="baseline",
          official={"rc": {"alpha": 0.9999, "epochs": 10, "lr": 0.01, "batch_size": 128, "forget_batch_size": 32,
                           "momentum": 0.0, "weight_decay": 0.0}},
          source="paper eq. (2), section 2.4 (Kurmanji et al. 2023): alpha * CE(D_r) - (1 - alpha) * CE(D_f)")
def run_neggrad_plus(model, sets, cfg, ctx) -> Outcome:
    def objective(fwd, b, fb):
        total = cfg.alpha * ce(fwd, b) - (1 - cfg.alpha) * ce(fwd, fb)  # eq. (2)
        return total, total
    return simple_loop(model, sets.retain, cfg, ctx, objective, paired=sets.forget,
                       paired_batch_size=cfg.forget_batch_size)
