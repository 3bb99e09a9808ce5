"""The forward pass the training loop calls, eager or through ``torch.compile`` with its feature
taps (CUDA graphs included with ``"reduce-overhead"``)."""
from __future__ import annotations

import time

import torch
import torch.nn as nn

from .config import COMPILE_MODES
from .data import LabelledImages, to_float
from .models import FeatureTap
from .runtime import autocast, sync

__all__ = ["Forward"]


class Forward:
    """The forward pass the training loop calls: ``fwd(x) -> (logits, [features of layers])``.

    ``mode="off"`` runs ``model`` eagerly. Any other mode is a ``torch.compile`` mode applied to
    the forward *with its feature taps* (``"reduce-overhead"`` adds CUDA graphs on a GPU). The
    taps' forward hooks are registered here, before compilation, and stay until :meth:`close`:
    hooks added to a module after its graph was compiled are not seen by that graph. Shapes are
    static (``dynamic=False``): an epoch has at most two batch sizes, each compiled once.
    :meth:`warmup` compiles them ahead of the timed loop, so ``compile_seconds`` is reported
    apart from the training or unlearning time. Use as a context manager; closing a compiled
    Forward resets torch.compile's caches (see :meth:`close`).
    """

    def __init__(self, model: nn.Module, layers=(), mode: str = "off"):
        if mode not in COMPILE_MODES:
            raise ValueError(f"compile {mode!r} is not one of {', '.join(COMPILE_MODES)}")
        self.model, self.mode = model, mode
        self.tap = FeatureTap(model, layers).__enter__() if layers else None
        t0 = time.perf_counter()
        self._fn = self._eager if mode == "off" else torch.compile(self._eager, mode=mode, dynamic=False)
        self._graphs = mode in ("reduce-overhead", "max-autotune")
        self.compile_seconds = time.perf_counter() - t0 if mode != "off" else 0.0  # dynamo's imports

    def _eager(self, x):
        logits = self.model(x)
        return logits, (self.tap.take() if self.tap is not None else [])

    def __call__(self, x: torch.Tensor):
        if self._graphs and x.is_cuda:
            # CUDA graphs: a new training step begins, so the previous replay's outputs (already
            # consumed by its backward) may be overwritten (torch.compile's cudagraph trees)
            torch.compiler.cudagraph_mark_step_begin()
        return self._fn(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)[0]

    def warmup(self, data: LabelledImages, sizes, fast: bool = True, amp: str = "auto") -> float:
        """Compile every batch size in ``sizes`` (forward and backward) on the first images of
        ``data``; weights, buffers (batch-norm statistics) and gradients are left as they were.
        Returns the seconds spent, also added to ``compile_seconds``. A no-op when eager."""
        if self.mode == "off":
            return 0.0
        dev = data.labels.device
        saved = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        was = self.model.training
        self.model.train()
        sync(dev)
        t0 = time.perf_counter()
        graphs = self.mode in ("reduce-overhead", "max-autotune") and dev.type == "cuda"
        reps = 3 if graphs else 1  # CUDA graphs: a warm-up run, the recording, a replay
        for size in sorted(set(sizes)):
            x = to_float(data.images[:size])
            for _ in range(reps):
                with autocast(dev, fast, amp):
                    logits, feats = self(x)
                    loss = logits.float().sum() + sum(f.float().sum() for f in feats)
                loss.backward()
        sync(dev)
        secs = time.perf_counter() - t0
        self.model.zero_grad(set_to_none=True)
        with torch.no_grad():
            for k, v in self.model.state_dict().items():
                v.copy_(saved[k])  # in place: compiled graphs keep the same tensors
        self.model.train(was)
        self.compile_seconds += secs
        return secs

    def close(self) -> None:
        """Remove the taps' hooks; when compiled, also clear torch.compile's caches
        (``torch.compiler.reset()``): every run compiles its own model, and stale entries would
        otherwise fill dynamo's per-function recompile limit and silently fall back to eager.
        Inductor's on-disk cache survives, so a later run of the same shapes compiles faster."""
        if self.tap is not None:
            self.tap.__exit__(None, None, None)
            self.tap = None
        if self.mode != "off" and self._fn is not None:
            t0 = time.perf_counter()
            self._fn = None
            torch.compiler.reset()
            self.compile_seconds += time.perf_counter() - t0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
