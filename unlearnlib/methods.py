"""The seven unlearning methods behind one entry point, :func:`unlearn`.

Every method is a config dataclass (defaults with units and sources) plus the batch objective(s)
it hands to the shared loop in :mod:`unlearnlib.train`. The original model is never modified:
each method works on a deep copy.

=================  ===========================================================================
``retrain``         the original recipe from scratch on D_r (paper 2.1; the gold standard)
``finetune``        cross-entropy on D_r from the original weights (2.2)
``neggrad``         gradient ascent on the cross-entropy of D_f, eq. (1) (2.3)
``neggrad_plus``    ``alpha * CE(retain) - (1 - alpha) * CE(forget)`` per step, eq. (2) (2.4)
``scrub``           SCRUB, eqs. (3)-(5), Algorithms 1-3 (2.5)
``scrub_attention`` SCRUB + attention-map distillation on several layers, eqs. (6)-(7) (3)
``scrub_similarity`` SCRUB + similarity-matrix distillation on ``layer4``, eqs. (6)-(7) (3)
=================  ===========================================================================
"""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import LabelledImages, to_float
from .losses import attention_loss_to_maps, attention_map, kd_kl, similarity_loss
from .models import FeatureTap
from .train import (Forward, TrainConfig, _device_of, _generator, autocast, batch_sizes, check_config,
                    fit, hashable_config, make_optimizer, predict_logits, run_epoch, sync, train)

__all__ = ["METHODS", "unlearn", "unlearning", "UnlearnResult", "RetrainConfig", "FinetuneConfig",
           "NegGradConfig", "NegGradPlusConfig", "ScrubConfig", "AttentionScrubConfig",
           "SimilarityScrubConfig", "default_config"]


# ---------------------------------------------------------------- configs

@dataclass
class RetrainConfig(TrainConfig):
    """Retrain: exactly the original model's recipe (TrainConfig), run on D_r only."""


@dataclass
class FinetuneConfig:
    """Finetune: CE on D_r from the original weights (official SCRUB code's finetune settings)."""
    epochs: int = 10              # passes over D_r
    batch_size: int = 32          # retain images per step
    lr: float = 0.01              # constant SGD learning rate
    momentum: float = 0.9
    weight_decay: float = 5e-4
    fast: bool = True             # CUDA only: bf16 autocast, fused SGD
    compile: str = "off"          # torch.compile mode of the forward (train.COMPILE_MODES)


@dataclass
class NegGradConfig:
    """NegGrad, eq. (1): w <- w + lr * grad CE(D_f). A weak baseline that degrades quickly."""
    epochs: int = 5               # passes over D_f
    batch_size: int = 16          # forget images per step
    lr: float = 0.001             # constant SGD learning rate (ascent)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    fast: bool = True
    compile: str = "off"


@dataclass
class NegGradPlusConfig:
    """NegGrad+, eq. (2): per step ``alpha * CE(retain) - (1 - alpha) * CE(forget)``."""
    epochs: int = 5               # passes over D_r; each retain batch is paired with a forget batch
    batch_size: int = 32          # retain images per step
    forget_batch_size: int = 16   # forget images per step (D_f is cycled)
    alpha: float = 0.95           # weight of the retain loss (SCRUB code's NegGrad+ setting)
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    fast: bool = True
    compile: str = "off"


@dataclass
class ScrubConfig:
    """SCRUB (Kurmanji et al. 2023), official CIFAR-10/ResNet-18 settings."""
    epochs: int = 5               # STEPS of Algorithm 1: min-epochs over D_r
    max_steps: int = 3            # MAX-STEPS: the first max_steps epochs also do a max-epoch on D_f
    batch_size: int = 32          # retain images per min-step
    forget_batch_size: int = 16   # forget images per max-step
    lr: float = 5e-4              # epsilon of Algorithms 2 and 3 (constant)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    alpha: float = 0.5            # weight of d(x_r) in the min-step (Algorithm 3)
    gamma: float = 1.0            # weight of CE(x_r) in the min-step, eq. (5)
    T: float = 4.0                # distillation temperature of d, eq. (4)
    beta: float = 0.0             # weight of the feature term, eqs. (6)/(7); 0 for vanilla SCRUB
    rewind: bool = False          # SCRUB+R: return the epoch whose forget error is closest to test error
    cache_teacher: bool = True    # precompute the frozen teacher's outputs once (exact: no augmentation)
    fast: bool = True             # CUDA only: bf16 autocast, fused SGD
    compile: str = "off"          # torch.compile mode of the student's forward (train.COMPILE_MODES)


@dataclass
class AttentionScrubConfig(ScrubConfig):
    """Attention SCRUB: attention transfer on layer1..layer4 (``layers``), weighted by ``beta``.

    ``beta=100`` (units: per summed MSE of unit-norm maps, which is O(1/HW)) puts the feature
    term at a few percent of d at the start of unlearning on the quick RB split.
    """
    beta: float = 100.0
    layers: tuple = ("layer1", "layer2", "layer3", "layer4")


@dataclass
class SimilarityScrubConfig(ScrubConfig):
    """Similarity SCRUB: similarity-preserving loss on ``layer4`` (the topmost conv layer)."""
    beta: float = 100.0
    layers: tuple = ("layer4",)


METHODS = {
    "retrain": RetrainConfig, "finetune": FinetuneConfig, "neggrad": NegGradConfig,
    "neggrad_plus": NegGradPlusConfig, "scrub": ScrubConfig,
    "scrub_attention": AttentionScrubConfig, "scrub_similarity": SimilarityScrubConfig,
}


def default_config(method: str, **overrides):
    """The method's default config with ``overrides`` applied, validated before any compute."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
    cls = METHODS[method]
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown} for method {method!r}; "
                         f"accepted: {', '.join(names)}")
    cfg = cls(**overrides)
    if "layers" in names:
        if isinstance(cfg.layers, str) or not all(isinstance(n, str) for n in cfg.layers) or not cfg.layers:
            raise ValueError(f"{cls.__name__}.layers must be a non-empty sequence of layer names, "
                             f"got {cfg.layers!r}")
        cfg.layers = tuple(cfg.layers)
    check_config(cfg)
    if isinstance(cfg, NegGradPlusConfig) and not 0 <= cfg.alpha <= 1:
        raise ValueError(f"NegGradPlusConfig.alpha must be in [0, 1], got {cfg.alpha}")
    return cfg


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


# ---------------------------------------------------------------- objectives

def _ce(fwd, b):
    return F.cross_entropy(fwd.logits(b.x).float(), b.y)


class _Teacher:
    """The frozen original model in eval mode, with outputs optionally cached per data set."""

    def __init__(self, original: nn.Module, cfg: ScrubConfig, sets: dict[str, LabelledImages]):
        self.net = copy.deepcopy(original).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.layers = tuple(getattr(cfg, "layers", ())) if cfg.beta > 0 else ()
        self.kind = ("attention" if isinstance(cfg, AttentionScrubConfig) else "similarity")
        self.fast = cfg.fast
        self.cache = None
        if cfg.cache_teacher:
            self.cache = {name: self._targets_all(d) for name, d in sets.items()}

    def _targets(self, x):
        """Teacher logits and feature targets (attention maps or flattened layer4) for a batch."""
        dev = x.device
        with torch.no_grad(), autocast(dev, self.fast):
            if not self.layers:
                return self.net(x).float(), []
            with FeatureTap(self.net, self.layers) as tap:
                logits = self.net(x).float()
                feats = tap.take()
        if self.kind == "attention":
            return logits, [attention_map(f) for f in feats]
        return logits, [f.float().flatten(1) for f in feats]

    def _targets_all(self, data: LabelledImages, bs: int = 512):
        outs = [self._targets(to_float(data.images[s:s + bs])) for s in range(0, len(data), bs)]
        logits = torch.cat([o[0] for o in outs])
        feats = [torch.cat([o[1][i] for o in outs]) for i in range(len(self.layers))]
        return logits, feats

    def __call__(self, name, b):
        if self.cache is not None:
            logits, feats = self.cache[name]
            return logits[b.idx], [f[b.idx] for f in feats]
        return self._targets(b.x)


def _scrub_terms(fwd, teacher: _Teacher, name: str, b, cfg: ScrubConfig):
    """d(x; w_u) of eq. (4) and the feature term of eqs. (6)/(7) for one batch; ``fwd`` is the
    student's :class:`~unlearnlib.train.Forward`, tapping the teacher's layers."""
    t_logits, t_feats = teacher(name, b)
    s_logits, s_feats = fwd(b.x)
    d = kd_kl(s_logits, t_logits, cfg.T)
    feat = torch.zeros((), device=b.x.device)
    if s_feats:
        if teacher.kind == "attention":
            feat = attention_loss_to_maps(s_feats, t_feats)
        else:
            feat = sum(similarity_loss(s, t.view_as(s)) for s, t in zip(s_feats, t_feats))
    return s_logits, d, feat


# ---------------------------------------------------------------- methods

def _scrub(model, split_sets, cfg: ScrubConfig, seed, resume, on_epoch_end):
    retain, forget, test = split_sets
    dev = _device_of(model)
    teacher = _Teacher(model, cfg, {"retain": retain, "forget": forget})
    student = model  # already a copy of the original
    opt = make_optimizer(student, cfg.lr, cfg.momentum, cfg.weight_decay, fast=cfg.fast)
    gen = _generator(seed, dev)
    fwd = Forward(student, teacher.layers, cfg.compile)
    states: list = []

    def max_objective(m, b, _):  # Algorithm 2: ascend d (+ beta * feature term, eq. 6)
        _, d, feat = _scrub_terms(fwd, teacher, "forget", b, cfg)
        total = d + cfg.beta * feat
        return -total, total

    def min_objective(m, b, _):  # Algorithm 3: descend alpha*d + gamma*CE (+ beta * feature, eq. 7)
        logits, d, feat = _scrub_terms(fwd, teacher, "retain", b, cfg)
        total = cfg.alpha * d + cfg.gamma * F.cross_entropy(logits.float(), b.y) + cfg.beta * feat
        return total, total

    def epoch_fn(i):
        student.train()
        row = {}
        if i < cfg.max_steps:
            row["max_loss"] = run_epoch(student, opt, forget, cfg.forget_batch_size,
                                        max_objective, gen, fast=cfg.fast)["loss"]
        row["min_loss"] = run_epoch(student, opt, retain, cfg.batch_size, min_objective, gen,
                                    fast=cfg.fast)["loss"]
        if cfg.rewind:
            student.eval()
            row["forget_error"] = _error(student, forget)
            row["test_error"] = _error(student, test)
            states.append({k: v.detach().clone() for k, v in student.state_dict().items()})
        return row

    sizes = batch_sizes(len(retain), cfg.batch_size)
    if cfg.max_steps > 0:
        sizes |= batch_sizes(len(forget), cfg.forget_batch_size)
    with fwd:
        fwd.warmup(max(retain, forget, key=len), sizes, cfg.fast)
        history, diverged = fit(student, opt, cfg.epochs, epoch_fn, gen, resume=resume,
                                resume_key=_key(cfg, seed, split_sets), on_epoch_end=on_epoch_end,
                                nan_keys=("max_loss", "min_loss"))
    rewound = None
    if cfg.rewind and states and not diverged:
        gaps = [abs(h["forget_error"] - h["test_error"]) for h in history[-len(states):]]
        best = min(range(len(gaps)), key=gaps.__getitem__)
        student.load_state_dict(states[best])
        rewound = history[-len(states) + best]["epoch"]
    return history, diverged, rewound, fwd.compile_seconds


def _error(model, data: LabelledImages) -> torch.Tensor:
    return 1 - (predict_logits(model, data.images).argmax(1) == data.labels).float().mean()


def _key(cfg, seed, sets) -> str:
    from .io import config_hash
    return config_hash({"cfg": hashable_config(cfg), "seed": seed, "n": [len(s) for s in sets]})


def _simple(model, data, cfg, seed, resume, on_epoch_end, objective, paired=None, pbs=0):
    """One loop of ``objective(fwd, batch, paired_batch)`` over ``data`` (Finetune, NegGrad, NegGrad+)."""
    opt = make_optimizer(model, cfg.lr, cfg.momentum, cfg.weight_decay, fast=cfg.fast)
    gen = _generator(seed, _device_of(model))
    pgen = _generator(seed + 7919, _device_of(model)) if paired is not None else None
    fwd = Forward(model, mode=cfg.compile)

    def epoch_fn(_):
        model.train()
        return {"loss": run_epoch(model, opt, data, cfg.batch_size, lambda _, b, pb: objective(fwd, b, pb),
                                  gen, paired=paired, paired_batch_size=pbs, paired_generator=pgen,
                                  fast=cfg.fast)["loss"]}

    sizes = batch_sizes(len(data), cfg.batch_size)
    if paired is not None:
        sizes |= batch_sizes(len(paired), pbs)
    with fwd:
        fwd.warmup(max(data, paired if paired is not None else data, key=len), sizes, cfg.fast)
        history, diverged = fit(model, opt, cfg.epochs, epoch_fn, gen, resume=resume,
                                resume_key=_key(cfg, seed, [data]), on_epoch_end=on_epoch_end,
                                extra_generators=(pgen,) if pgen is not None else ())
    return history, diverged, None, fwd.compile_seconds


def _run(method, model, retain, forget, test, cfg, seed, resume, on_epoch_end, arch_kwargs):
    if method == "retrain":
        from .models import build_model
        from .train import seed_everything
        seed_everything(seed)
        fresh = build_model(**arch_kwargs).to(_device_of(model))
        tcfg = TrainConfig(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(TrainConfig)})
        history = train(fresh, retain.images, retain.labels, tcfg, seed=seed, resume=resume,
                        on_epoch_end=on_epoch_end)
        return fresh, list(history), False, None, history.compile_seconds
    if method == "finetune":
        out = _simple(model, retain, cfg, seed, resume, on_epoch_end, lambda m, b, _: (_ce(m, b),) * 2)
    elif method == "neggrad":
        def obj(m, b, _):
            ce = _ce(m, b)
            return -ce, ce  # eq. (1): ascend the forget loss; history reports CE(D_f)
        out = _simple(model, forget, cfg, seed, resume, on_epoch_end, obj)
    elif method == "neggrad_plus":
        def obj(m, b, fb):
            r, f = _ce(m, b), _ce(m, fb)
            total = cfg.alpha * r - (1 - cfg.alpha) * f  # eq. (2)
            return total, total
        out = _simple(model, retain, cfg, seed, resume, on_epoch_end, obj, paired=forget,
                      pbs=cfg.forget_batch_size)
    else:
        out = _scrub(model, (retain, forget, test), cfg, seed, resume, on_epoch_end)
    return (model, *out)


def _arch_kwargs(model) -> dict:
    from .models import ResNet18
    if not isinstance(model, ResNet18):
        raise ValueError("method 'retrain' needs an unlearnlib ResNet18 (it rebuilds the "
                         "architecture); for your own network, train it yourself on the retain set")
    return {"num_classes": model.fc.out_features, "width": model.conv1.out_channels / 64,
            "mean": model.normalize.mean.flatten().tolist(), "std": model.normalize.std.flatten().tolist()}


def unlearn(method: str, model: nn.Module, split, config=None, *, seed: int | None = None,
            resume=None, on_epoch_end=None, preset: str | None = None, **overrides) -> UnlearnResult:
    """Unlearn ``split.forget`` from ``model`` with ``method``; the original is left untouched.

    ``config`` is the method's config dataclass (default: its defaults); ``overrides`` replace
    single fields, e.g. ``unlearn("scrub", net, split, lr=1e-3, beta=0)``. Names, types and
    ranges are checked before any compute. ``seed`` defaults to ``split.seed``. ``preset`` names
    a preset written by a sweep (e.g. ``"rb-resnet18"``): its values come first, then ``overrides``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
    if preset is not None:
        from .sweep import load_preset
        overrides = {**load_preset(preset, method), **overrides}
    if config is not None:
        if not isinstance(config, METHODS[method]):
            raise ValueError(f"config for {method!r} must be a {METHODS[method].__name__}, "
                             f"got {type(config).__name__}")
        overrides = {**dataclasses.asdict(config), **overrides}
    cfg = default_config(method, **overrides)
    from .checkpoints import check_model_split
    from .splits import validate_seed
    check_model_split(model, split, "to unlearn")
    seed = validate_seed(split.seed if seed is None else seed)
    for name in ("retain", "forget"):
        if len(getattr(split, name)) == 0:
            raise ValueError(f"the {name} set is empty")
    arch = _arch_kwargs(model) if method == "retrain" else {}
    dev = _device_of(model)
    retain, forget, test = (getattr(split, n).to(dev) for n in ("retain", "forget", "test"))
    work = copy.deepcopy(model)
    if dev.type == "cuda" and cfg.fast:  # a checkpoint loads contiguous; the fast path is channels_last
        work = work.to(memory_format=torch.channels_last)
    sync(dev)
    t0 = time.perf_counter()
    net, history, diverged, rewound, compile_secs = _run(method, work, retain, forget, test, cfg, seed,
                                                         resume, on_epoch_end, arch)
    sync(dev)
    seconds = time.perf_counter() - t0 - compile_secs
    net.eval()
    return UnlearnResult(method, net, history, seconds, dataclasses.asdict(cfg), diverged, rewound,
                         compile_secs)


# ---------------------------------------------------------------- kit-style API

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
