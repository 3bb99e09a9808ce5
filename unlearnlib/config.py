"""Config dataclasses and their validation: the lowest floor, imported by everything that
builds or checks a config.

Every numeric field has a range. A config class declares its ranges in ``RANGES`` (a class
variable, merged along the class hierarchy), written as intervals: ``"[0, 1]"``, ``"(0, 100]"``.
A numeric field without a declared range must be non-negative. :func:`check_config` checks
types and ranges and raises ``ValueError`` naming the class, the field, the allowed range
and the value, before any compute.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import ClassVar

__all__ = ["TrainConfig", "check_config", "hashable_config", "field_range", "SCHEDULES", "AMP_MODES",
           "COMPILE_MODES"]

SCHEDULES = ("onecycle", "cosine", "constant")
AMP_MODES = ("auto", "bf16", "fp16", "fp32")
# "off": eager. Others are torch.compile modes; "reduce-overhead" adds CUDA graphs (GPU only).
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# ranges shared by every config that has these fields
COMMON_RANGES = {"epochs": "[0, 10000]", "batch_size": "[1, 1000000]", "forget_batch_size": "[1, 1000000]",
                 "lr": "[0, 1000]", "momentum": "[0, 1)", "weight_decay": "[0, 1]"}


@dataclass
class TrainConfig:
    """How the original model (and Retrain) is trained. Units in comments."""
    epochs: int = 30               # passes over the training set
    batch_size: int = 128          # images per SGD step
    lr: float = 0.1                # peak learning rate
    momentum: float = 0.9          # SGD momentum
    weight_decay: float = 5e-4     # L2 penalty
    nesterov: bool = True          # Nesterov momentum
    schedule: str = "onecycle"     # "onecycle" (linear warm-up, linear decay), "cosine", "constant"
    warmup_epochs: float = 2.0     # epochs of linear warm-up for "onecycle"
    augment: bool = True           # random crop (pad H/8) + horizontal flip, on the device
    label_smoothing: float = 0.0   # cross-entropy label smoothing
    fast: bool = True              # CUDA only: bf16 autocast, channels_last, fused SGD
    amp: str = "auto"              # "auto" (CUDA, fast: bf16 on capability >= 8, fp16 + scaler on 7.x), "bf16", "fp16", "fp32"
    compile: str = "off"           # torch.compile mode of the forward: "off" (eager) or one of COMPILE_MODES

    RANGES: ClassVar[dict] = {"warmup_epochs": "[0, 10000]", "label_smoothing": "[0, 1)"}
    CHOICES: ClassVar[dict] = {"schedule": SCHEDULES, "amp": AMP_MODES}


def hashable_config(cfg) -> dict:
    """``asdict(cfg)`` for config hashes. ``compile="off"`` and ``channels_last=False`` are left
    out, so runs without them keep the hashes they had before the fields existed; a compiled or
    channels_last run hashes differently (its numbers differ in the last bits)."""
    d = dataclasses.asdict(cfg)
    if d.get("compile") == "off":
        d.pop("compile")
    if d.get("channels_last") is False:
        d.pop("channels_last")
    return d


_INTERVAL = re.compile(r"^\s*([\[(])\s*([^,]+?)\s*,\s*([^,]+?)\s*([\])])\s*$")


def _merged(cfg, name: str) -> dict:
    out: dict = {}
    for klass in reversed(type(cfg).__mro__):
        out.update(vars(klass).get(name, {}))
    return out


def field_range(cfg, name: str) -> str | None:
    """The declared interval of field ``name`` of config ``cfg`` (class or instance), or None."""
    return {**COMMON_RANGES, **_merged(cfg, "RANGES")}.get(name)


def _inside(v: float, interval: str) -> bool:
    m = _INTERVAL.match(interval)
    if m is None:
        raise ValueError(f"bad range {interval!r}: write it as [lo, hi], (lo, hi], [lo, hi) or (lo, hi)")
    lo, hi = float(m.group(2)), float(m.group(3))
    return (v >= lo if m.group(1) == "[" else v > lo) and (v <= hi if m.group(4) == "]" else v < hi)


def check_config(cfg) -> None:
    """Type-, choice- and range-check every field of a config dataclass; ValueError naming the
    class, the field, what is allowed and the value."""
    cls = type(cfg).__name__
    ranges = {**COMMON_RANGES, **_merged(cfg, "RANGES")}
    choices = {"compile": COMPILE_MODES, **_merged(cfg, "CHOICES")}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        default = f.default if f.default is not dataclasses.MISSING else None
        if isinstance(default, bool):
            if not isinstance(v, bool):
                raise ValueError(f"{cls}.{f.name} must be True or False, got {v!r}")
        elif isinstance(default, (int, float)):
            integer = isinstance(default, int)
            kind = "an integer" if integer else "a number"
            ok_type = (isinstance(v, int) if integer else isinstance(v, (int, float))) and not isinstance(v, bool)
            interval = ranges.get(f.name, "[0, inf]")
            if not ok_type or not math.isfinite(v) or not _inside(v, interval):
                raise ValueError(f"{cls}.{f.name} must be {kind} in {interval}, got {v!r}")
        elif isinstance(default, str):
            if not isinstance(v, str):
                raise ValueError(f"{cls}.{f.name} must be a string, got {v!r}")
            if f.name in choices and v not in choices[f.name]:
                raise ValueError(f"{f.name} {v!r} is not one of {', '.join(choices[f.name])}")
        elif isinstance(default, tuple) and default and all(isinstance(x, int) for x in default):
            # a list of epochs (e.g. ScrubConfig.lr_decay_epochs): integers in the field's range
            interval = ranges.get(f.name, "[0, 10000]")
            if (not isinstance(v, (list, tuple)) or not all(isinstance(x, int) and not isinstance(x, bool)
                                                            and _inside(x, interval) for x in v)):
                raise ValueError(f"{cls}.{f.name} must be a list of integers in {interval}, got {v!r}")
