"""Unlearning methods behind one entry point, :func:`unlearn`, and the registry they fill.

Each family lives in one module that registers its methods (:func:`register`): the baselines
(Retrain, Finetune, NegGrad, NegGrad+) in :mod:`.baselines`, SCRUB and the paper's
feature-distillation variants in :mod:`.scrub`. :mod:`.kit` adapts the NeurIPS 2023 kit's
``unlearning(net, retain, forget, validation)``. ``METHODS`` maps each name to its record
(config, run function, label, table order, source); ``python -m unlearnlib methods`` prints it.
The original model is never modified: each method works on a deep copy.

Every module of this package is imported here, so a new method module registers itself by
existing: adding a method is one new file (see the README's "Adding a method").
"""
import importlib
import pkgutil

from .api import UnlearnResult, unlearn
from .base import (METHODS, Context, Method, Outcome, Sets, default_config, get_method, method_config,
                   method_names, register)
from .baselines import FinetuneConfig, NegGradConfig, NegGradPlusConfig, RetrainConfig
from .kit import unlearning
from .scrub import AttentionScrubConfig, ScrubConfig, SimilarityScrubConfig

for _m in pkgutil.iter_modules(__path__):  # registers every method module's methods
    importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["METHODS", "Method", "register", "get_method", "method_names", "default_config", "method_config",
           "unlearn", "unlearning", "UnlearnResult", "Sets", "Context", "Outcome", "RetrainConfig",
           "FinetuneConfig", "NegGradConfig", "NegGradPlusConfig", "ScrubConfig", "AttentionScrubConfig",
           "SimilarityScrubConfig"]
