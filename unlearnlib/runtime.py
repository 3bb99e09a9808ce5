"""Runtime helpers shared by the loop, the methods and the study: devices, seeds, precision,
optimizers. Public, so that no module reaches into another's private names."""
from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch
import torch.nn as nn

__all__ = ["seed_everything", "set_deterministic", "sync", "device_of", "use_fast", "autocast",
           "make_optimizer", "make_generator", "batch_sizes", "default_device", "device_name"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_deterministic(on: bool = True) -> None:
    """Deterministic algorithms everywhere (slower on GPU: no cuDNN autotuning, no atomics)."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on, warn_only=False)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = not on


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def device_name(device) -> str:
    """The GPU's name, or ``"cpu"``: recorded with every checkpoint and result row."""
    d = torch.device(device)
    return torch.cuda.get_device_name(d) if d.type == "cuda" else "cpu"


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def use_fast(device: torch.device, fast: bool) -> bool:
    """Whether the fast path (bf16 autocast, channels_last, fused SGD) applies: CUDA only."""
    return fast and device.type == "cuda"


def autocast(device: torch.device, fast: bool, amp: str = "auto"):
    """bf16 autocast (fp32 weights; batch-norm and losses stay fp32) per ``amp``; see TrainConfig."""
    if amp == "bf16" or (amp == "auto" and use_fast(device, fast)):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_optimizer(model: nn.Module, lr: float, momentum: float, weight_decay: float,
                   nesterov: bool = False, fast: bool = True) -> torch.optim.SGD:
    kw = {"fused": True} if use_fast(device_of(model), fast) else {}
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                           weight_decay=weight_decay, nesterov=nesterov and momentum > 0, **kw)


def make_generator(seed: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def batch_sizes(n: int, batch_size: int) -> set[int]:
    """The distinct batch sizes of an epoch over ``n`` examples (full batches and the remainder)."""
    return {s for s in (min(n, batch_size), n % batch_size) if s > 0}
