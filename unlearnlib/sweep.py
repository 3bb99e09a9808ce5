"""Hyperparameter and seed grids on Ray, with presets chosen by Avg. Gap to Retrain.

A grid is a dict (or a small YAML file)::

    scenario: rb
    profile: quick
    grid:    {method: [scrub, finetune], lr: [0.001, 0.01], seed: [0, 1]}
    fixed:   {epochs: 3}          # optional: the same for every point
    train:   {epochs: 15}         # optional: overrides of the original model's recipe

Every combination is a point, scored against Retrain; presets are chosen by the Avg. Gap on the
validation set (``avg_gap_val``), never on the reported test set. Each seed's original model
and Retrain reference are prepared
once (one Ray task per seed); every point then runs as a Ray task that unlearns, evaluates
against Retrain and returns its row; the driver alone appends rows to ``run_dir/results.jsonl``.
Points whose row is already stored are skipped, so a restarted sweep runs only what is missing;
a point that raises is stored with ``status="failed"`` and its error, and the others go on.

Nothing travels through a file system: each seed's original and Retrain are trained once, by one
Ray task, in a folder local to its worker, and come back as checkpoint bytes (safetensors with
their payload checksum) that Ray's object store hands to every point of the seed; a point writes
its own checkpoint only to a temporary folder of its worker. The driver alone writes to
``run_dir``: the results store, and a copy of each seed's models (``run_dir/models``), verified
and reused by a restarted sweep. So a multi-node cluster needs no shared disk, and every node
unlearns the very same original model.

With no address, Ray starts locally on this machine; with ``address`` or ``RAY_ADDRESS`` the
sweep runs on that cluster (unlearnlib is shipped to the workers with ``runtime_env``; the data
reach them by the normal route: an archive folder through ``data_dir``/``UNLEARNLIB_DATA``, or
the checked download).
Presets are written and read by :mod:`unlearnlib.presets`.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import time
import traceback
from pathlib import Path

from .io import config_hash, git_commit, versions

__all__ = ["expand", "run_sweep", "select_presets", "load_grid", "sensitivity_rows"]

SWEEP_KEYS = {"scenario", "profile", "grid", "fixed", "train", "name"}


def load_grid(spec) -> dict:
    """A grid spec from a dict or a YAML/JSON file, checked."""
    if isinstance(spec, (str, os.PathLike)):
        text = Path(spec).read_text()
        if str(spec).endswith(".json"):
            spec = json.loads(text)
        else:
            import yaml
            spec = yaml.safe_load(text)
    if not isinstance(spec, dict):
        raise ValueError(f"a sweep spec must be a mapping, got {type(spec).__name__}")
    unknown = set(spec) - SWEEP_KEYS
    if unknown:
        raise ValueError(f"unknown sweep key(s) {sorted(unknown)}; allowed: {', '.join(sorted(SWEEP_KEYS))}")
    grid = spec.get("grid") or {}
    if "method" not in grid or "seed" not in grid:
        raise ValueError("a sweep grid needs at least 'method' and 'seed' lists")
    for k, v in grid.items():
        if not isinstance(v, (list, tuple)) or not v:
            raise ValueError(f"grid entry {k!r} must be a non-empty list, got {v!r}")
    return {"scenario": spec.get("scenario", "rb"), "profile": spec.get("profile", "quick"),
            "grid": {k: list(v) for k, v in grid.items()}, "fixed": dict(spec.get("fixed") or {}),
            "train": dict(spec.get("train") or {}), "name": spec.get("name", "sweep")}


def expand(spec) -> list[dict]:
    """All points of the grid, each validated (method names, hyperparameters) before any compute."""
    from .profiles import get_profile
    from .splits import SCENARIOS, validate_seed
    from .study import method_config
    spec = load_grid(spec)
    if spec["scenario"] not in SCENARIOS:
        raise ValueError(f"unknown scenario {spec['scenario']!r}; allowed: {', '.join(SCENARIOS)}")
    keys = list(spec["grid"])
    points = []
    for values in itertools.product(*(spec["grid"][k] for k in keys)):
        p = dict(zip(keys, values))
        method, seed = p.pop("method"), validate_seed(p.pop("seed"))
        overrides = {**spec["fixed"], **p}
        if method == "retrain":
            overrides = {**spec["train"], **overrides}
        cfg = method_config(method, spec["profile"], spec["scenario"], **overrides)  # raises on bad values
        # what a preset must restore on top of the library defaults: the profile's values, then the point's
        preset = {**get_profile(spec["profile"]).methods.get(method, {}), **overrides}
        points.append({"scenario": spec["scenario"], "profile": spec["profile"], "method": method,
                       "seed": seed, "overrides": overrides, "train": spec["train"], "preset": preset,
                       "config_hash": config_hash({"method": dataclasses.asdict(cfg), "train": spec["train"]})})
    return points


def _prepare(scenario, seed, profile, data_dir, train, threads) -> dict:
    """Ray task: the original model and Retrain reference of one seed, trained in a folder local to
    the worker. Returns their checkpoints as bytes (safetensors: weights, metadata and payload
    checksum, no pickle), which travel to the driver and to every point through Ray's object store:
    no node needs another's disk."""
    import tempfile

    import torch
    torch.set_num_threads(threads)
    from .study import prepare_seed
    with tempfile.TemporaryDirectory() as tmp:
        s = prepare_seed(scenario, seed, profile, tmp, data_dir=data_dir, train_overrides=train,
                         retrain_overrides=train, tag_config=True)
        files = sorted((Path(tmp) / "checkpoints").glob("*.safetensors"))
        pick = lambda what: next(f for f in files if f"-seed{seed}-{what}" in f.name).read_bytes()
        return {"original": pick("original"), "retrain": pick("retrain"), "fingerprint": s.split.fingerprint}


def _seed_models(payload: dict, split, train: dict, folder: Path):
    """The :class:`~unlearnlib.study.SeedModels` of a :func:`_prepare` payload: each checkpoint is
    written to ``folder`` and loaded back, its checksum and split fingerprint verified."""
    from .checkpoints import load_checkpoint
    from .study import SeedModels
    models = {}
    for what in ("original", "retrain"):
        path = Path(folder) / f"{what}.safetensors"
        path.write_bytes(payload[what])
        models[what] = load_checkpoint(path, expect={"split_fingerprint": split.fingerprint})
    (orig, ometa), (ref, rmeta) = models["original"], models["retrain"]
    return SeedModels(split, orig, ometa, ref, rmeta, dict(train), True)


def _run_point(point, payload, data_dir, threads):
    """Ray task: one point through the study's runner, from the seed's models as they came through
    the object store (``payload``); the unlearned checkpoint stays in a folder local to the worker."""
    import tempfile

    import torch
    torch.set_num_threads(threads)
    from .runtime import default_device, device_name
    from .splits import make_split
    from .study import model_for, score
    t0 = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="unlearnlib-point-")
    try:
        split = make_split(point["scenario"], point["seed"], data_dir, profile=point["profile"])
        s = _seed_models(payload, split, point["train"], Path(tmp))
        model, meta = model_for(s, point["method"], point["profile"], tmp, **point["overrides"])
        row = score(s, model, meta)
        row.update(status="failed" if meta.get("diverged") else "ok", diverged=meta.get("diverged", False),
                   history=meta.get("history"))
        row["original_sha256"] = s.original_meta.get("payload_sha256")
    except Exception as e:  # recorded, and the sweep goes on
        row = {"status": "failed", "error": f"{type(e).__name__}: {e}",
               "traceback": traceback.format_exc(limit=5)}
    finally:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    row.update(point_seconds=time.perf_counter() - t0, device=device_name(default_device()))
    return row


def _models_file(run_dir: Path, point: dict, what: str) -> Path:
    """The driver's own copy of a seed's model for this sweep's recipe (``train``)."""
    tag = config_hash({"train": point["train"]})[:8]
    return run_dir / "models" / f"{point['scenario']}-{point['profile']}-seed{point['seed']}-{tag}-{what}.safetensors"


def _saved_payload(run_dir: Path, point: dict) -> dict | None:
    """The seed's models saved by the driver in an earlier sweep, verified (checksum, split), or None."""
    from .checkpoints import CheckpointDamaged, CheckpointMismatch, load_checkpoint
    out = {"fingerprint": point["split_fingerprint"]}
    for what in ("original", "retrain"):
        path = _models_file(run_dir, point, what)
        if not path.is_file():
            return None
        try:
            load_checkpoint(path, expect={"split_fingerprint": point["split_fingerprint"]})
        except (CheckpointDamaged, CheckpointMismatch, ValueError) as e:
            import warnings
            warnings.warn(f"{e}; training the seed's models again", RuntimeWarning, stacklevel=3)
            return None
        out[what] = path.read_bytes()
    return out


def _run_payload(models_from, point: dict, data_dir) -> dict | None:
    """The seed's original and Retrain from the report run folder ``models_from`` (its
    ``checkpoints/``, as :func:`unlearnlib.study.prepare_seed` writes them), when the sweep trains
    at the profile's recipe (no ``train`` overrides) and both checkpoints match this split and that
    recipe (metadata, config hash and checksum verified); else None. The same training set and
    recipe give the same models, so the sweep need not train them again (issue 16: reuse originals
    and Retrain wherever the training set is the same)."""
    if models_from is None or point["train"]:
        return None
    from .splits import make_split
    from .study import stored_seed_files
    split = make_split(point["scenario"], point["seed"], data_dir, profile=point["profile"])
    if split.fingerprint != point["split_fingerprint"]:
        return None
    files = stored_seed_files(split, point["profile"], models_from)
    if files is None:
        return None
    path, rpath = files
    return {"original": path.read_bytes(), "retrain": rpath.read_bytes(), "fingerprint": split.fingerprint}


def run_sweep(spec, run_dir="runs/sweep", *, address: str | None = None, data_dir=None,
              cpus_per_point: int = 1, gpus_per_point: float | None = None, retry_failed: bool = False,
              progress: bool = True, max_points: int | None = None, models_from=None) -> dict:
    """Run every missing point of ``spec`` on Ray; returns counts and the wall seconds.

    ``max_points`` stops after that many new points (used to test interruption). ``models_from``:
    a report run folder whose seeds' original and Retrain the sweep reuses where they match its
    split and recipe (:func:`_run_payload`; summary ``reused_seeds``) instead of training them.
    """
    from .results import ResultsStore
    from .runtime import progress_bar
    from .splits import make_split
    try:
        import ray
    except ImportError as e:
        raise ImportError("sweeps need Ray: pip install 'ray>=2.9'") from e
    spec = load_grid(spec)
    points = expand(spec)
    run_dir = Path(run_dir).resolve()
    store = ResultsStore(run_dir / "results.jsonl")
    fps = {s: make_split(spec["scenario"], s, data_dir, profile=spec["profile"]).fingerprint
           for s in sorted({p["seed"] for p in points})}
    for p in points:
        p["split_fingerprint"] = fps[p["seed"]]
    have = {(r["method"], r["seed"], r["config_hash"], r["split_fingerprint"]): r.get("status", "ok")
            for r in store.rows() if r.get("scenario") == spec["scenario"]}
    todo = [p for p in points if have.get((p["method"], p["seed"], p["config_hash"], p["split_fingerprint"]))
            not in ("ok",) + (() if retry_failed else ("failed",))]
    if max_points is not None:
        todo = todo[:max_points]
    t0 = time.perf_counter()
    summary = {"points": len(points), "skipped": len(points) - len(todo), "ran": 0, "failed": 0,
               "trained_seeds": [], "reused_seeds": []}
    if not todo:
        summary["seconds"] = 0.0
        return summary
    import torch
    gpus = gpus_per_point if gpus_per_point is not None else (1 if torch.cuda.is_available() else 0)
    address = address or os.environ.get("RAY_ADDRESS")
    init = dict(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
                configure_logging=False)
    if address:
        # the package travels with the job; so do the data and cache locations, where set
        env = {k: os.environ[k] for k in ("UNLEARNLIB_DATA", "UNLEARNLIB_CACHE") if k in os.environ}
        init.update(address=address, runtime_env={"py_modules": [str(Path(__file__).resolve().parent)],
                                                  "env_vars": env})
    ray.init(**init)
    try:
        prep = ray.remote(num_cpus=cpus_per_point, num_gpus=gpus)(_prepare)
        point_task = ray.remote(num_cpus=cpus_per_point, num_gpus=gpus)(_run_point)
        # each seed's original and Retrain: trained once, by one task (or read from the driver's own
        # copy of an earlier sweep), then put in the object store for every point of the seed
        first = {}
        for p in todo:
            first.setdefault(p["seed"], p)
        refs = {}
        for seed, p in first.items():
            saved = _saved_payload(run_dir, p)
            if saved is None:
                saved = _run_payload(models_from, p, data_dir)
                if saved is not None:
                    summary["reused_seeds"].append(seed)
            if saved is not None:
                refs[seed] = ray.put(saved)
            else:
                refs[seed] = prep.remote(spec["scenario"], seed, spec["profile"], data_dir, spec["train"], cpus_per_point)
                summary["trained_seeds"].append(seed)
        from .io import atomic_write_bytes
        for seed in summary["trained_seeds"]:  # the driver keeps a copy, so a restarted sweep reuses them
            payload = ray.get(refs[seed])
            for what in ("original", "retrain"):
                atomic_write_bytes(_models_file(run_dir, first[seed], what), payload[what])
        pending = {point_task.remote(p, refs[p["seed"]], data_dir, cpus_per_point): p for p in todo}
        bar = progress_bar(total=len(todo), desc=f"sweep {spec['name']}", disable=not progress)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            p = pending.pop(done[0])
            row = ray.get(done[0])
            row.update(scenario=p["scenario"], method=p["method"], seed=p["seed"], config_hash=p["config_hash"],
                       split_fingerprint=p["split_fingerprint"], profile=p["profile"], config=p["overrides"],
                       preset_overrides=p["preset"],
                       sweep=spec["name"], git_commit=git_commit(), versions=versions())
            store.append(row, replace=True)
            summary["ran"] += 1
            summary["failed"] += row["status"] != "ok"
            el = time.perf_counter() - t0
            left = el / summary["ran"] * len(pending)
            bar.set_postfix_str(f"running {min(len(pending), int(ray.available_resources().get('CPU', 0)) or 1)}, "
                                f"failed {summary['failed']}, ~{left:.0f}s left")
            bar.update(1)
        bar.close()
    finally:
        if not address:
            ray.shutdown()
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    return summary


def select_presets(rows: list[dict], scenario: str | None = None, key: str = "avg_gap_val") -> dict:
    """Per method, the configuration with the smallest Avg. Gap to Retrain *on the validation set*
    (``avg_gap_val``, see :mod:`unlearnlib.metrics`) averaged over seeds. The reported test set is
    never read: rows without the validation figure are not used."""
    import numpy as np
    groups: dict = {}
    for r in rows:
        if r.get("status", "ok") != "ok" or key not in r or r["method"] == "retrain":
            continue
        if scenario is not None and r["scenario"] != scenario:
            continue
        groups.setdefault(r["method"], {}).setdefault(r["config_hash"], []).append(r)
    out = {}
    for method, by_cfg in groups.items():
        scores = {h: float(np.mean([r[key] for r in rs])) for h, rs in by_cfg.items()}
        best = min(sorted(scores), key=lambda h: scores[h])
        first = by_cfg[best][0]
        out[method] = {"overrides": first.get("preset_overrides", first.get("config")) or {}, key: scores[best],
                       "n_seeds": len(by_cfg[best]), "config_hash": best}
    return out


def sensitivity_rows(rows: list[dict], param: str = "lr") -> list[dict]:
    """Rows with ``param`` lifted out of their config, for the sensitivity figure."""
    out = []
    for r in rows:
        if r.get("status", "ok") == "ok" and param in (r.get("config") or {}):
            out.append({**r, param: r["config"][param]})
    return out
