"""The one training loop that the original model, Retrain and every unlearning method share.

Batches are index slices of tensors already on the model's device (no DataLoader in the hot
loop); shuffling and augmentation draw from a ``torch.Generator`` seeded per run. Losses and
accuracy accumulate on the device and are read once per epoch, so there is no host sync per
step. On CUDA the loop uses autocast (bf16 on compute capability 8+, fp16 with a gradient
scaler on 7.x such as Colab's T4; fp32 weights and batch-norm; see
:func:`~unlearnlib.runtime.precision`), channels_last and a fused SGD; with ``compile`` set, the model's forward (and so its backward) runs through
``torch.compile`` (:class:`Forward`), CUDA graphs included with ``"reduce-overhead"``.
:func:`fit` owns per-epoch history, timing, resumption and the NaN guard. Configs live in
:mod:`unlearnlib.config`, device helpers in :mod:`unlearnlib.runtime`, the compiled forward in
:mod:`unlearnlib.forward`.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Callable, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import TrainConfig, check_config, hashable_config
from .data import LabelledImages, augment, payload_digest, to_float
from .forward import Forward
from .io import atomic_write_bytes, config_hash
from .runtime import autocast, batch_sizes, device_of, make_generator, make_optimizer, make_scaler, sync, use_fast

__all__ = ["train", "fit", "run_epoch", "Batch", "predict_logits", "Diverged", "History", "data_digest"]


class Diverged(RuntimeError):
    """A loss became NaN or infinite."""


class Batch(NamedTuple):
    x: torch.Tensor    # float images in [0, 1], augmented if asked
    y: torch.Tensor    # int64 labels
    idx: torch.Tensor  # positions in the data set (for cached teacher outputs)


class History(list):
    """Per-epoch rows (a list) with the seconds spent compiling, kept apart from training time."""
    compile_seconds: float = 0.0


def data_digest(*sets: LabelledImages) -> str:
    """sha256 of the labels and pixels of ``sets``: part of every resume key, with the starting
    weights, so a resume file only ever continues the run that wrote it."""
    return payload_digest({f"{i}.{k}": getattr(d, k) for i, d in enumerate(sets) for k in ("images", "labels")})


def run_epoch(model: nn.Module, optimizer, data: LabelledImages, batch_size: int,
              objective: Callable, generator: torch.Generator, *, augment_data: bool = False,
              paired: LabelledImages | None = None, paired_batch_size: int = 0,
              paired_generator: torch.Generator | None = None,
              lr_at: Callable[[int], float] | None = None, fast: bool = True,
              amp: str = "auto", drop_last: bool = False,
              after_backward: Callable[[nn.Module], None] | None = None,
              scaler=None) -> dict[str, torch.Tensor]:
    """One pass over ``data`` in shuffled mini-batches.

    ``objective(model, batch, paired_batch)`` returns ``(loss, report)``: ``loss`` is minimised,
    ``report`` (detached, per-batch mean) is averaged into the epoch's history. With ``paired``,
    each batch comes with the next batch of ``paired`` (cycled, reshuffled per cycle), as
    NegGrad+ pairs retain with forget batches; the paired stream draws from ``paired_generator``,
    so the primary batches are the same as without pairing. ``after_backward(model)`` runs between
    ``backward()`` and the optimizer step, with the gradients in place: a method's gradient mask
    (SalUn) or clipping goes there. Returns ``loss`` (device) and ``steps``.

    ``scaler`` (a ``torch.amp.GradScaler``, from :func:`~unlearnlib.runtime.make_scaler` under
    fp16) scales each loss before ``backward()`` and unscales the gradients before
    ``after_backward``, so masks and clipping see true gradients; a step whose gradients overflow
    is skipped by the scaler (and the scale lowered). Its batch is left out of the epoch's mean
    loss and counted in ``skipped``: a skipped step is not a divergence, but an epoch whose every
    step was skipped has a NaN loss, which :func:`fit` treats as one. The objective's sign is
    free: SCRUB's max-step scales its negated loss like any other.
    """
    dev = data.labels.device
    n = len(data)
    perm = torch.randperm(n, device=dev, generator=generator)
    stops = range(0, n - batch_size + 1 if drop_last else n, batch_size)
    total = torch.zeros((), device=dev)
    finite = torch.zeros((), device=dev)  # with a scaler: the steps whose loss was finite
    p_perm, p_pos = None, 0
    for step, start in enumerate(stops):
        idx = perm[start:start + batch_size]
        x = to_float(data.images[idx])
        if augment_data:
            x = augment(x, generator)
        batch = Batch(x, data.labels[idx], idx)
        pbatch = None
        if paired is not None:
            if p_perm is None or p_pos >= len(paired):
                p_perm, p_pos = torch.randperm(len(paired), device=dev, generator=paired_generator), 0
            pidx = p_perm[p_pos:p_pos + paired_batch_size]
            p_pos += paired_batch_size
            pbatch = Batch(to_float(paired.images[pidx]), paired.labels[pidx], pidx)
        if lr_at is not None:
            lr = lr_at(step)
            for g in optimizer.param_groups:
                g["lr"] = lr
        with autocast(dev, fast, amp):
            loss, report = objective(model, batch, pbatch)
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            if after_backward is not None:
                after_backward(model)
            optimizer.step()
            total += report.detach().float()
            continue
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        if after_backward is not None:
            after_backward(model)
        scaler.step(optimizer)  # skipped when a gradient is inf or NaN
        scaler.update()
        r = report.detach().float()
        ok = torch.isfinite(r)
        total += torch.where(ok, r, torch.zeros_like(r))
        finite += ok
    if scaler is None:
        return {"loss": total / max(1, len(stops)), "steps": len(stops)}
    return {"loss": total / finite, "steps": len(stops), "skipped": len(stops) - finite}


# ---------------------------------------------------------------- resumable epochs

def _save_resume(path: Path, model, optimizer, generators, epoch: int, history: list, key: str, scaler=None):
    from safetensors.torch import save
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for i, st in opt["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{i}.{k}"] = v.detach().cpu().contiguous()
    for i, g in enumerate(generators):
        tensors[f"generator.{i}"] = g.get_state().cpu()
    meta = {"epoch": str(epoch), "history": json.dumps(history), "key": key,
            "param_groups": json.dumps(opt["param_groups"])}
    if scaler is not None:  # fp16: the loss scale and its growth tracker (plain numbers)
        meta["scaler"] = json.dumps(scaler.state_dict())
    atomic_write_bytes(path, save(tensors, metadata=meta))


def _load_resume(path: Path, model, optimizer, generators, key: str, scaler=None):
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        if meta.get("key") != key:
            raise ValueError(f"resume file {path} belongs to another run (config key "
                             f"{meta.get('key')!r}, this run {key!r}); delete it or pick another path")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    dev = device_of(model)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, i, name = k.split(".", 2)
            state.setdefault(int(i), {})[name] = v.to(dev)
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    for i, g in enumerate(generators):
        g.set_state(tensors[f"generator.{i}"])
    if scaler is not None and "scaler" in meta:
        scaler.load_state_dict(json.loads(meta["scaler"]))
    return int(meta["epoch"]), json.loads(meta["history"])


def fit(model: nn.Module, optimizer, epochs: int, epoch_fn: Callable[[int], dict],
        generator: torch.Generator, *, resume: str | os.PathLike | None = None,
        resume_key: str = "", on_epoch_end: Callable | None = None,
        nan_keys: tuple = ("loss",), extra_generators: tuple = (), scaler=None) -> tuple[list[dict], bool]:
    """Run ``epoch_fn(epoch)`` for each epoch; returns ``(history, diverged)``.

    ``epoch_fn`` returns a dict of device tensors or numbers: read here once per epoch, with the
    wall seconds added. If a value named in ``nan_keys`` is not finite, the weights are put back
    to the last finite epoch, a warning is issued, and ``diverged`` is True. With ``resume``, the
    model, optimizer, generator and history are saved atomically after every epoch, and a
    restarted run continues from the last saved epoch; a file whose ``resume_key`` differs (another
    config, seed, data or starting weights) is refused (``extra_generators``, e.g. NegGrad+'s
    forget stream, are saved and restored with ``generator``, and so is the fp16 gradient
    ``scaler``'s state: its loss scale and growth tracker).
    """
    gens = (generator, *extra_generators)
    dev = device_of(model)
    history: list[dict] = []
    start = 0
    resume = Path(resume) if resume is not None else None
    if resume is not None and resume.is_file():
        start, history = _load_resume(resume, model, optimizer, gens, resume_key, scaler)
    last_good = copy.deepcopy(model.state_dict())
    for epoch in range(start, epochs):
        sync(dev)
        t0 = time.perf_counter()
        row = epoch_fn(epoch)
        sync(dev)
        row = {k: (v.item() if torch.is_tensor(v) else v) for k, v in row.items()}
        row = {"epoch": epoch + 1, **row, "seconds": time.perf_counter() - t0}
        bad = [k for k in nan_keys if k in row and not math.isfinite(row[k])]
        if bad:
            model.load_state_dict(last_good)
            row["diverged"] = True
            history.append(row)
            warnings.warn(f"unlearning/training diverged at epoch {epoch + 1}: {bad} not finite; "
                          f"weights restored to epoch {epoch}. Lower the learning rate.",
                          RuntimeWarning, stacklevel=2)
            return history, True
        history.append(row)
        last_good = copy.deepcopy(model.state_dict())
        if resume is not None:
            _save_resume(resume, model, optimizer, gens, epoch + 1, history, resume_key, scaler)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, row)
    return history, False


# ---------------------------------------------------------------- training

def _lr_fn(cfg: TrainConfig, steps_per_epoch: int) -> Callable[[int, int], float]:
    total = max(1, cfg.epochs * steps_per_epoch)
    warm = max(1, int(cfg.warmup_epochs * steps_per_epoch))

    def lr(epoch: int, step: int) -> float:
        t = epoch * steps_per_epoch + step
        if cfg.schedule == "constant":
            return cfg.lr
        if cfg.schedule == "cosine":
            return cfg.lr * 0.5 * (1 + math.cos(math.pi * t / total))
        if t < warm:
            return cfg.lr * (t + 1) / warm
        return cfg.lr * max(0.0, (total - t) / max(1, total - warm))
    return lr


def train(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
          config: TrainConfig | None = None, *, seed: int = 0, resume=None,
          on_epoch_end: Callable | None = None, **overrides) -> History:
    """Train ``model`` in place with SGD on (images, labels); returns the per-epoch history.

    ``images`` are uint8 (or float in [0, 1]) N x 3 x H x W, moved to the model's device once.
    History rows hold ``loss``, ``acc`` (training accuracy on augmented batches) and ``seconds``;
    ``history.compile_seconds`` is the time spent compiling (``cfg.compile``), not in any row.
    """
    cfg = dataclasses.replace(config or TrainConfig(), **overrides)
    check_config(cfg)
    dev = device_of(model)
    data = LabelledImages(images, labels).to(dev)
    if len(data) == 0:
        raise ValueError("train() got an empty training set")
    if use_fast(dev, cfg.fast):
        model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.nesterov, cfg.fast)
    scaler = make_scaler(dev, cfg.fast, cfg.amp)
    gen = make_generator(seed, dev)
    steps = math.ceil(len(data) / cfg.batch_size)
    lr = _lr_fn(cfg, steps)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    fwd = Forward(model, mode=cfg.compile)

    def objective(m, b, _):
        out = fwd.logits(b.x)
        loss = F.cross_entropy(out.float(), b.y, label_smoothing=cfg.label_smoothing)
        correct.add_((out.argmax(1) == b.y).sum())
        return loss, loss

    def epoch_fn(epoch):
        correct.zero_()
        model.train()
        row = run_epoch(model, opt, data, cfg.batch_size, objective, gen, augment_data=cfg.augment,
                        lr_at=lambda step: lr(epoch, step), fast=cfg.fast, amp=cfg.amp, scaler=scaler)
        out = {"loss": row["loss"], "acc": correct / len(data)}
        if "skipped" in row:  # fp16: steps the gradient scaler skipped (overflow)
            out["skipped"] = row["skipped"]
        return out

    # only a resumable run needs the key (it hashes the data and the starting weights)
    key = "" if resume is None else config_hash({"train": hashable_config(cfg), "seed": seed,
                                                 "data": data_digest(data), "start": payload_digest(model.state_dict())})
    with fwd:
        fwd.warmup(data, batch_sizes(len(data), cfg.batch_size), cfg.fast, cfg.amp)
        history, diverged = fit(model, opt, cfg.epochs, epoch_fn, gen, resume=resume,
                                resume_key=key, on_epoch_end=on_epoch_end, scaler=scaler)
    model.eval()
    if diverged:
        raise Diverged(f"training diverged at epoch {len(history)}; lower lr (now {cfg.lr})")
    history = History(history)
    history.compile_seconds = fwd.compile_seconds
    return history


@torch.inference_mode()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 1024,
                   fast: bool = True) -> torch.Tensor:
    """Logits (float32) of ``model`` in eval mode for all images, in large batches."""
    dev = device_of(model)
    was = model.training
    model.eval()
    outs = []
    for s in range(0, len(images), batch_size):
        x = to_float(images[s:s + batch_size].to(dev, non_blocking=True))
        with autocast(dev, fast):
            outs.append(model(x).float())
    model.train(was)
    if not outs:
        return torch.zeros(0, 0, device=dev)
    return torch.cat(outs)
