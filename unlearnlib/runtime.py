"""Runtime helpers shared by the loop, the methods and the study: devices, seeds, precision,
optimizers. Public, so that no module reaches into another's private names."""
from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch
import torch.nn as nn

__all__ = ["progress_bar", "seed_everything", "set_deterministic", "sync", "device_of", "use_fast", "precision", "autocast",
           "make_scaler", "make_optimizer", "make_generator", "batch_sizes", "default_device", "device_name"]


def progress_bar(*args, **kwargs):
    """A tqdm bar: ``tqdm.auto`` (a widget in Jupyter and Colab, text elsewhere), or plain text
    when ``UNLEARNLIB_PROGRESS=text``, which ``run-all`` sets so that the notebooks it executes
    stream their progress to the terminal (a widget would print nothing there)."""
    if os.environ.get("UNLEARNLIB_PROGRESS") == "text":
        from tqdm.std import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm(*args, **kwargs)


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


def precision(device, fast: bool = True, amp: str = "auto") -> str:
    """The arithmetic the loop runs in: ``"bf16"``, ``"fp16"`` or ``"fp32"``.

    An explicit ``amp`` ("bf16", "fp16", "fp32") is taken as given. ``"auto"`` chooses per device:
    on CUDA with the fast path, bf16 autocast on compute capability 8.0 and above (A100, H100, L4,
    RTX 30xx/40xx), fp16 autocast with a gradient scaler on 7.x (V100, T4: no bf16 tensor cores,
    and Triton does not compile bf16 for sm_75), fp32 below; fp32 on every other device (CPU).
    """
    device = torch.device(device)
    if amp != "auto":
        return amp
    if not use_fast(device, fast):
        return "fp32"
    major = torch.cuda.get_device_capability(device)[0]
    return "bf16" if major >= 8 else "fp16" if major == 7 else "fp32"


def autocast(device: torch.device, fast: bool, amp: str = "auto"):
    """Autocast to :func:`precision`'s dtype (fp32 weights; batch-norm and losses stay fp32);
    a no-op for fp32."""
    device = torch.device(device)
    p = precision(device, fast, amp)
    if p == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if p == "bf16" else torch.float16)


def make_scaler(device, fast: bool = True, amp: str = "auto"):
    """A ``torch.amp.GradScaler`` where :func:`precision` is fp16 (its small exponent range
    underflows small gradients without loss scaling), else None."""
    device = torch.device(device)
    return torch.amp.GradScaler(device.type) if precision(device, fast, amp) == "fp16" else None


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
