"""SCRUB (Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023) and the paper's
feature-distillation variants (section 3, eqs. 6-7): Attention SCRUB and Similarity SCRUB.

The feature term a variant adds is named by its config class's ``feature`` (a class variable):
``"attention"`` (attention transfer over ``layers``) or ``"similarity"`` (similarity-preserving
loss on ``layers``). A new variant subclasses a config and sets ``feature``; :data:`FEATURES`
holds the teacher targets and the loss of each kind.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import LabelledImages, to_float
from ..forward import Forward
from ..losses import attention_loss_to_maps, attention_map, kd_kl, similarity_loss
from ..models import FeatureTap
from ..runtime import autocast, batch_sizes, device_of, make_generator, make_optimizer
from ..train import fit, run_epoch
from .base import Outcome, error, register, resume_key

__all__ = ["ScrubConfig", "AttentionScrubConfig", "SimilarityScrubConfig", "FEATURES"]


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
    rewind: bool = False          # SCRUB+R: return the epoch whose forget error is closest to the validation error
    cache_teacher: bool = True    # precompute the frozen teacher's outputs once (exact: no augmentation)
    fast: bool = True             # CUDA only: bf16 autocast, fused SGD
    compile: str = "off"          # torch.compile mode of the student's forward (config.COMPILE_MODES)

    feature: ClassVar[str | None] = None  # the feature term's kind (a key of FEATURES); None: logits only
    RANGES: ClassVar[dict] = {"max_steps": "[0, 10000]", "alpha": "[0, 1000]", "gamma": "[0, 1000]",
                              "T": "(0, 100]", "beta": "[0, 1000000]"}


@dataclass
class AttentionScrubConfig(ScrubConfig):
    """Attention SCRUB: attention transfer on layer1..layer4 (``layers``), weighted by ``beta``.

    ``beta=100`` (units: per summed MSE of unit-norm maps, which is O(1/HW)) puts the feature
    term at a few percent of d at the start of unlearning on the quick RB split.
    """
    beta: float = 100.0
    layers: tuple = ("layer1", "layer2", "layer3", "layer4")
    feature: ClassVar[str | None] = "attention"


@dataclass
class SimilarityScrubConfig(ScrubConfig):
    """Similarity SCRUB: similarity-preserving loss on ``layer4`` (the topmost conv layer)."""
    beta: float = 100.0
    layers: tuple = ("layer4",)
    feature: ClassVar[str | None] = "similarity"


def _similarity_term(s_feats, t_feats):
    return sum(similarity_loss(s, t.view_as(s)) for s, t in zip(s_feats, t_feats))


# kind -> (teacher target of one layer's feature, loss between student features and targets)
FEATURES = {
    "attention": (attention_map, attention_loss_to_maps),  # Zagoruyko & Komodakis 2017, eqs. (6)/(7)
    "similarity": (lambda f: f.float().flatten(1), _similarity_term),  # Tung & Mori 2019, eqs. (6)/(7)
}


class Teacher:
    """The frozen original model in eval mode, with outputs optionally cached per data set."""

    def __init__(self, original: nn.Module, cfg: ScrubConfig, sets: dict[str, LabelledImages]):
        self.net = copy.deepcopy(original).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.layers = tuple(getattr(cfg, "layers", ())) if cfg.beta > 0 else ()
        if self.layers and cfg.feature not in FEATURES:
            raise ValueError(f"{type(cfg).__name__} taps {self.layers} but its feature kind is "
                             f"{cfg.feature!r}; set the class variable feature to one of {', '.join(FEATURES)}")
        self.target, self.loss = FEATURES[cfg.feature] if self.layers else (None, None)
        self.fast = cfg.fast
        self.cache = None
        if cfg.cache_teacher:
            self.cache = {name: self._targets_all(d) for name, d in sets.items()}

    def _targets(self, x):
        """Teacher logits and feature targets for a batch."""
        with torch.no_grad(), autocast(x.device, self.fast):
            if not self.layers:
                return self.net(x).float(), []
            with FeatureTap(self.net, self.layers) as tap:
                logits = self.net(x).float()
                feats = tap.take()
        return logits, [self.target(f) for f in feats]

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


def scrub_terms(fwd, teacher: Teacher, name: str, b, cfg: ScrubConfig):
    """d(x; w_u) of eq. (4) and the feature term of eqs. (6)/(7) for one batch; ``fwd`` is the
    student's :class:`~unlearnlib.forward.Forward`, tapping the teacher's layers."""
    t_logits, t_feats = teacher(name, b)
    s_logits, s_feats = fwd(b.x)
    d = kd_kl(s_logits, t_logits, cfg.T)
    feat = teacher.loss(s_feats, t_feats) if s_feats else torch.zeros((), device=b.x.device)
    return s_logits, d, feat


def run_scrub(model, sets, cfg: ScrubConfig, ctx) -> Outcome:
    """Algorithm 1: ``epochs`` min-epochs on D_r, the first ``max_steps`` preceded by a max-epoch
    on D_f; with ``rewind`` (SCRUB+R), the epoch whose forget error is closest to the error on the
    validation set (never the reported test set)."""
    retain, forget, validation = sets.retain, sets.forget, sets.validation
    if cfg.rewind and validation is None:
        raise ValueError("SCRUB+R (rewind=True) needs a validation set to choose the epoch; this split has none")
    key = "" if ctx.resume is None else resume_key(cfg, ctx.seed, sets, model)
    teacher = Teacher(model, cfg, {"retain": retain, "forget": forget})
    student = model  # already a copy of the original
    opt = make_optimizer(student, cfg.lr, cfg.momentum, cfg.weight_decay, fast=cfg.fast)
    gen = make_generator(ctx.seed, device_of(model))
    fwd = Forward(student, teacher.layers, cfg.compile)
    states: list = []

    def max_objective(m, b, _):  # Algorithm 2: ascend d (+ beta * feature term, eq. 6)
        _, d, feat = scrub_terms(fwd, teacher, "forget", b, cfg)
        total = d + cfg.beta * feat
        return -total, total

    def min_objective(m, b, _):  # Algorithm 3: descend alpha*d + gamma*CE (+ beta * feature, eq. 7)
        logits, d, feat = scrub_terms(fwd, teacher, "retain", b, cfg)
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
            row["forget_error"] = error(student, forget)
            row["validation_error"] = error(student, validation)
            states.append({k: v.detach().clone() for k, v in student.state_dict().items()})
        return row

    sizes = batch_sizes(len(retain), cfg.batch_size)
    if cfg.max_steps > 0:
        sizes |= batch_sizes(len(forget), cfg.forget_batch_size)
    with fwd:
        fwd.warmup(max(retain, forget, key=len), sizes, cfg.fast)
        history, diverged = fit(student, opt, cfg.epochs, epoch_fn, gen, resume=ctx.resume,
                                resume_key=key, on_epoch_end=ctx.on_epoch_end,
                                nan_keys=("max_loss", "min_loss"))
    rewound = None
    if cfg.rewind and states and not diverged:
        gaps = [abs(h["forget_error"] - h["validation_error"]) for h in history[-len(states):]]
        best = min(range(len(gaps)), key=gaps.__getitem__)
        student.load_state_dict(states[best])
        rewound = history[-len(states) + best]["epoch"]
    return Outcome(student, history, diverged, rewound, fwd.compile_seconds)


_SCRUB_SOURCE = "Kurmanji et al., NeurIPS 2023 (official code: meghdadk/SCRUB)"
register("scrub", config=ScrubConfig, label="SCRUB", order=40, family="scrub",
         source=f"paper eqs. (3)-(5), Algorithms 1-3; {_SCRUB_SOURCE}")(run_scrub)
register("scrub_attention", config=AttentionScrubConfig, label="Attention SCRUB", order=50, family="scrub",
         source="paper eqs. (6)-(7), section 3: SCRUB + attention transfer (Zagoruyko & Komodakis, ICLR 2017) "
                "over layer1..layer4")(run_scrub)
register("scrub_similarity", config=SimilarityScrubConfig, label="Similarity SCRUB", order=60, family="scrub",
         source="paper eqs. (6)-(7), section 3: SCRUB + similarity-preserving KD (Tung & Mori, ICCV 2019) "
                "on layer4")(run_scrub)
