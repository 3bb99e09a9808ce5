"""Helpers for the notebook series: parameter validation and where things go.

A notebook records ``before = set(globals())`` just ahead of its ``parameters`` cell; the cell
after (papermill puts injected parameters between them) calls :func:`check_parameters`, which
refuses names the notebook does not declare, so ``-p sede 2`` fails instead of silently
running with the default seed.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .profiles import PROFILES
from .splits import SCENARIOS, validate_seed

__all__ = ["check_parameters", "default_seeds", "project_root", "in_colab"]


def in_colab() -> bool:
    try:
        import google.colab  # noqa: F401
        return True
    except ImportError:
        return False


def project_root() -> Path:
    """Where relative output folders are resolved: ``UNLEARNLIB_OUTPUT_DIR`` if set (the test
    suite points it at a temporary folder), else the checkout holding ``pyproject.toml`` above
    the working folder, else the working folder."""
    if os.environ.get("UNLEARNLIB_OUTPUT_DIR"):
        return Path(os.environ["UNLEARNLIB_OUTPUT_DIR"]).resolve()
    here = Path.cwd().resolve()
    for p in (here, *here.parents):
        if (p / "pyproject.toml").is_file() and (p / "unlearnlib").is_dir():
            return p
    return here


def default_seeds(profile: str) -> list[int]:
    """The seeds a notebook runs when its ``seeds`` parameter is None: ``UNLEARNLIB_SEEDS`` (comma
    separated, e.g. ``0,1``) where it is set, else the profile's. The test suite sets it to 0,1 for
    the notebooks nbmake executes, so that the series fits CI's time; unset (as it is outside the
    tests), a run by hand or by ``run-all`` (which passes no seeds) gets the profile's three."""
    env = os.environ.get("UNLEARNLIB_SEEDS", "").strip()
    if not env:
        return list(PROFILES[profile].seeds)
    try:
        seeds = [int(x) for x in env.split(",")]
    except ValueError:
        raise ValueError(f"UNLEARNLIB_SEEDS must be comma-separated non-negative integers, got {env!r}") from None
    return [validate_seed(x) for x in seeds]


def check_parameters(namespace: dict, before: set, declared) -> dict:
    """Validate a notebook's parameters; returns them resolved (paths, profile, seeds).

    ``declared`` holds the names the parameters cell defines. Unknown injected names and a bad
    value of any known parameter (scenario(s), profile, seed(s), workers, methods, n_images, lrs,
    betas, preset) raise ``ValueError`` naming the value and what is allowed.
    """
    declared = {n for n in declared if not n.startswith("_")}  # IPython's _i3, _ and the notebook's _before
    unknown = sorted(n for n in set(namespace) - before - declared if not n.startswith("_"))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; this notebook accepts: {', '.join(sorted(declared))}")
    p = {k: namespace[k] for k in sorted(declared)}
    if "scenario" in p and p["scenario"] not in SCENARIOS:
        raise ValueError(f"unknown scenario {p['scenario']!r}; allowed: {', '.join(SCENARIOS)}")
    if "profile" in p:
        if p["profile"] == "auto":
            p["profile"] = "paper" if torch.cuda.is_available() else "quick"
        if p["profile"] not in PROFILES:
            raise ValueError(f"unknown profile {p['profile']!r}; allowed: auto, {', '.join(PROFILES)}")
    if "workers" in p:
        from .study import validate_workers
        if p["workers"] is None:  # the profile's (run-all's default too), so both routes give the same models
            p["workers"] = PROFILES[p["profile"]].workers if "profile" in p else 1
        p["workers"] = validate_workers(p["workers"])
    from .methods import method_names
    if "methods" in p and p["methods"] is None:  # every default method (see method_names)
        p["methods"] = method_names(default_only=True)
    for key, ok, allowed in (("scenarios", lambda s: s in SCENARIOS, " or ".join(SCENARIOS)),
                             ("methods", lambda m: m in method_names(), ", ".join(method_names())),
                             ("lrs", lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)
                              and 0 < x <= 1000, "numbers in (0, 1000]")):
        if key in p:
            v = p[key]
            if isinstance(v, str) or not isinstance(v, (list, tuple)) or not v or not all(map(ok, v)):
                raise ValueError(f"{key} must be a non-empty list of {allowed}, got {v!r}")
            p[key] = list(v)
    if "tuned" in p and not isinstance(p["tuned"], bool):
        raise ValueError(f"tuned must be True or False, got {p['tuned']!r}")
    if p.get("betas") is not None:
        v = p["betas"]
        if isinstance(v, str) or not isinstance(v, (list, tuple)) or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x <= 1e6 for x in v):
            raise ValueError(f"betas must be a list of numbers in [0, 1000000] (or None: the profile's), got {v!r}")
        p["betas"] = [float(x) for x in v]
    if "n_images" in p and (isinstance(p["n_images"], bool) or not isinstance(p["n_images"], int)
                            or not 1 <= p["n_images"] <= 50):
        raise ValueError(f"n_images must be an integer in 1..50, got {p['n_images']!r}")
    if "preset" in p and p["preset"] is not None:
        from .presets import validate_preset_name
        validate_preset_name(p["preset"])
    if p.get("seed") is not None:
        p["seed"] = validate_seed(p["seed"])
    if "seeds" in p:
        seeds = p["seeds"]
        if p.get("seed") is not None:
            seeds = [p["seed"]]
        elif seeds is None:
            seeds = default_seeds(p["profile"])
        if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__") or not list(seeds):
            raise ValueError(f"seeds must be a non-empty list of non-negative integers, got {seeds!r}")
        p["seeds"] = [validate_seed(s) for s in seeds]
    if "profile" in p:
        # names of tables and figures: profile, plus the seeds when they are not the profile's,
        # so that a one-seed run never overwrites the table of a full run
        default = list(PROFILES[p["profile"]].seeds)
        chosen = p.get("seeds", [p["seed"]] if p.get("seed") is not None else None)
        if "seeds" in p:
            p["tag"] = p["profile"] + ("" if chosen == default else "_seeds" + "-".join(map(str, chosen)))
        else:  # one-seed notebooks (01, 05): seed 0 keeps the plain name
            p["tag"] = p["profile"] + ("" if p.get("seed") in (None, 0) else f"_seed{p['seed']}")
    root = project_root()
    for key, default in (("run_dir", None), ("figures_dir", "figures"), ("results_dir", "results")):
        if key in p:
            val = p[key] if p[key] is not None else (default or os.path.join("runs", p.get("profile", "quick")))
            path = Path(val)
            p[key] = path if path.is_absolute() else root / path
            p[key].mkdir(parents=True, exist_ok=True)
    return p
