"""The method registry: one record per method, filled by the ``@register`` decorator of each
method module (torchdistill's registry pattern), and read by everything else: ``unlearn()``,
profiles, reports, tables, the CLI and the tests. Nothing outside a method's own module lists
method names.

A method is a config dataclass plus a run function::

    @register("finetune", config=FinetuneConfig, label="Finetune", order=10, family="baseline",
              source="paper section 2.2: CE on D_r from the original weights")
    def run_finetune(model, sets, cfg, ctx) -> Outcome: ...

``run`` gets a working copy of the original model (already on the device), the ``Sets``
(retain, forget, test) on that device, the validated config and a ``Context`` (seed, resume
file, per-epoch callback), and returns an ``Outcome``. It must not modify anything else.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import torch
import torch.nn as nn

from ..config import check_config, hashable_config
from ..data import LabelledImages
from ..io import config_hash
from ..profiles import resolve

__all__ = ["Method", "METHODS", "register", "get_method", "method_names", "default_config", "method_config",
           "Sets", "Context", "Outcome", "resume_key"]


class Sets(NamedTuple):
    """The split's sets on the model's device. Choices (SCRUB+R's rewind) read ``validation``,
    never ``test``; ``validation`` is None when the split has none."""
    retain: LabelledImages
    forget: LabelledImages
    test: LabelledImages
    validation: LabelledImages | None = None


class Context(NamedTuple):
    seed: int                           # seeds every generator of the run
    resume: Any = None                  # per-epoch resume file (see train.fit), or None
    on_epoch_end: Callable | None = None  # called as on_epoch_end(epoch, row)


class Outcome(NamedTuple):
    model: nn.Module                    # the unlearned model
    history: list                       # one dict per epoch
    diverged: bool = False              # a loss went non-finite (weights: the last finite epoch's)
    rewound_epoch: int | None = None    # SCRUB+R: the epoch returned
    compile_seconds: float = 0.0        # spent compiling, not counted in the method's seconds


@dataclass(frozen=True)
class Method:
    name: str                 # the key users pass: unlearn("scrub", ...)
    config: type              # its config dataclass (defaults with units and sources)
    run: Callable             # run(model, sets, cfg, ctx) -> Outcome
    label: str                # display name in tables and figures
    order: int                # position in tables (smaller first; Retrain is 0)
    source: str               # the equation or paper it implements, and the official code
    family: str = ""          # "reference", "baseline", "scrub", ...: notebooks select by family
    official: dict = field(default_factory=dict)  # scenario -> the official settings for it
    train_recipe: bool = False  # trains from scratch with the profile's recipe (Retrain)
    check: Callable | None = None  # check(model): ValueError before any compute if unsupported
    default: bool = True      # run when no method list is given (run_scenario, tune, notebooks, bench);
                              # False: only when named (methods=[...]), e.g. until its report lands


METHODS: dict[str, Method] = {}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def register(name: str, *, config: type, label: str, order: int, source: str, family: str = "",
             official: dict | None = None, train_recipe: bool = False, check: Callable | None = None,
             default: bool = True):
    """Decorator that registers ``run`` as method ``name`` (see the module docstring)."""
    if not _NAME.match(name):
        raise ValueError(f"method name {name!r} must match {_NAME.pattern}")
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"method {name!r}: config must be a dataclass, got {config!r}")
    if not source.strip():
        raise ValueError(f"method {name!r} must name the equation or paper it implements")

    def deco(run: Callable) -> Callable:
        if name in METHODS:
            raise ValueError(f"method {name!r} is already registered (by {METHODS[name].run.__module__})")
        METHODS[name] = Method(name, config, run, label, order, source, family, dict(official or {}),
                               train_recipe, check, default)
        ordered = sorted(METHODS.values(), key=lambda m: (m.order, m.name))
        METHODS.clear()
        METHODS.update((m.name, m) for m in ordered)
        return run
    return deco


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; allowed: {', '.join(METHODS)}")
    return METHODS[name]


def method_names(family: str | None = None, *, default_only: bool = False) -> list[str]:
    """Registered method names in table order, optionally of one family; ``default_only``: only
    the methods run when no method list is given (:attr:`Method.default`)."""
    return [n for n, m in METHODS.items()
            if (family is None or m.family == family) and (m.default or not default_only)]


def default_config(method: str, **overrides):
    """The method's default config with ``overrides`` applied, validated before any compute."""
    cls = get_method(method).config
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown} for method {method!r}; "
                         f"accepted: {', '.join(f.name for f in dataclasses.fields(cls))}")
    cfg = cls(**overrides)
    if "layers" in names:
        if isinstance(cfg.layers, str) or not all(isinstance(n, str) for n in cfg.layers) or not cfg.layers:
            raise ValueError(f"{cls.__name__}.layers must be a non-empty sequence of layer names, "
                             f"got {cfg.layers!r}")
        cfg.layers = tuple(cfg.layers)
    check_config(cfg)
    for f in dataclasses.fields(cfg):  # lists (JSON, papermill) become tuples: hashable, like the defaults
        if isinstance(getattr(cfg, f.name), list):
            setattr(cfg, f.name, tuple(getattr(cfg, f.name)))
    return cfg


def method_config(method: str, profile: str | None = None, scenario: str | None = None, *,
                  preset: str | None = None, **overrides):
    """The method's config for ``profile`` and ``scenario``: defaults, then the method's official
    settings for the scenario, then the profile, then ``preset``, then ``overrides``
    (:func:`unlearnlib.profiles.resolve`)."""
    rec = get_method(method)
    return default_config(method, **resolve(method, profile, scenario, official=rec.official,
                                            train_recipe=rec.train_recipe, preset=preset, overrides=overrides))


def resume_key(cfg, seed: int, sets, model: nn.Module) -> str:
    """What a resume file must match to be continued: the config, the seed, the data (labels and
    pixels of ``sets``) and ``model``'s starting weights."""
    from ..data import payload_digest
    from ..train import data_digest
    return config_hash({"cfg": hashable_config(cfg), "seed": seed, "data": data_digest(*[s for s in sets if s is not None]),
                        "start": payload_digest(model.state_dict())})


def error(model: nn.Module, data: LabelledImages) -> torch.Tensor:
    """Top-1 error of ``model`` on ``data`` (a device scalar)."""
    from ..train import predict_logits
    return 1 - (predict_logits(model, data.images).argmax(1) == data.labels).float().mean()
