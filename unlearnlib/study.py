"""The report series' data path: original model -> every method -> evaluate -> results store.

``get_original`` and ``run_method`` reuse a checkpoint in ``run_dir/checkpoints`` when its
metadata (scenario, seed, profile, split fingerprint, config hash, ...) matches, and train or
unlearn again when it does not. ``run_scenario`` skips (method, seed) rows that the results
store already has, so a disconnected run started again does only what is missing; a model whose
training or unlearning was cut off resumes from its last finished epoch (per-epoch state in
``run_dir/checkpoints/*.resume.safetensors``, removed once the checkpoint is written).

With ``workers > 1``, ``run_scenario`` first trains and unlearns the seeds concurrently, one
process per seed (on one GPU, or sharing the CPU cores), writing checkpoints only; then it
evaluates them in this process, in order, as a sequential run does. Each process runs exactly
the sequential code with the parent's determinism settings, so the results are identical to a
sequential run wherever that run is itself reproducible: on a CPU with the same number of
threads per process (CPU kernels split their sums by thread; tested), on a GPU in
deterministic mode (``set_deterministic``; cuDNN autotuning may pick other kernels otherwise).
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from .checkpoints import CheckpointDamaged, CheckpointMismatch, load_checkpoint, save_checkpoint
from .config import check_config, hashable_config
from .io import config_hash, git_commit, versions
from .methods import get_method, method_config, method_names, unlearn
from .metrics import evaluate
from .models import build_model
from .profiles import get_profile
from .results import ResultsStore
from .runtime import default_device, device_name, precision, progress_bar, seed_everything
from .splits import Split, make_split
from .train import train

__all__ = ["default_device", "get_original", "epoch_printer", "run_method", "run_scenario", "tune", "tuning_grid", "run_tuned", "stored_rows", "beta_sweep", "select_beta", "load_unlearned", "method_config",
           "SeedModels", "prepare_seed", "stored_seed_files", "timing", "model_for", "score", "few_model_forgetting", "validate_workers",
           "RESULTS_FILE", "TABLE_METRICS", "RETAIN_TOLERANCE"]

RESULTS_FILE = "results.jsonl"
# A choice on validation (tuning grid, beta) only takes settings that keep retain accuracy within
# this of Retrain's: the Avg. Gap alone can prefer a collapsed model (measured, paper-cpu RB: beta
# 3000 left Attention SCRUB at 38-48% retain accuracy, yet its validation Avg. Gap, 25.4%, beat
# every beta that kept 100%, because the forget gap shrank as everything fell).
RETAIN_TOLERANCE = 0.02
TABLE_METRICS = ["retain_acc", "forget_acc", "test_acc", "mia_loss", "mia_efficacy", "avg_gap",
                 "avg_gap_5", "js_forget", "seconds", "cost_ratio"]


# models trained at once by this process's pool (set in a worker by :func:`_work`; 1 in the driver)
_PROCESSES = 1


def timing() -> dict:
    """The conditions a model's ``seconds`` were measured under, stored in its checkpoint: this
    process's CPU threads and how many processes trained at once. A method's cost is set against
    Retrain's only when both were timed under the same conditions (:func:`score`)."""
    return {"threads": torch.get_num_threads(), "processes": _PROCESSES}


def _ckpt(run_dir, name) -> Path:
    return Path(run_dir) / "checkpoints" / f"{name}.safetensors"


def _expect(split, profile, **extra) -> dict:
    p = get_profile(profile)
    return {"arch": "resnet18", "width": p.width, "num_classes": split.num_classes,
            "dataset": split.dataset, "scenario": split.scenario, "seed": split.seed,
            "profile": profile, "split_fingerprint": split.fingerprint, "data_source": split.data_source, **extra}


def _load_if_matching(path: Path, expect: dict, device):
    if not path.is_file():
        return None
    try:
        return load_checkpoint(path, expect=expect, device=device)
    except (CheckpointMismatch, CheckpointDamaged) as e:  # never used: rebuilt from its source
        warnings.warn(f"{e}; training it again", stacklevel=3)
        return None


def _original_key(split, profile: str, run_dir, cfg, train_overrides) -> tuple[Path, dict]:
    """The original model's checkpoint path and expected metadata for ``split`` and recipe ``cfg``."""
    expect = _expect(split, profile, method="original", config_hash=config_hash(hashable_config(cfg)))
    tag = "" if not train_overrides else "-" + expect["config_hash"][:8]
    return _ckpt(run_dir, f"{split.scenario}-{profile}-seed{split.seed}-original{tag}"), expect


def get_original(scenario: str, seed: int, profile: str = "quick", run_dir="runs/default",
                 data_dir=None, device=None, split=None, progress=None, train_overrides: dict | None = None):
    """The original model for (scenario, seed, profile): loaded if a matching checkpoint
    exists, else trained on retain + forget and saved. Returns ``(model, split, meta)``. Class
    forgetting (``"cf"``) shares RB's original of the same seed (the same training set, checked by
    ``train_fingerprint``); its ``meta`` then names the CF split.
    ``train_overrides`` replaces fields of the profile's TrainConfig (part of the config hash)."""
    device = device or default_device()
    p = get_profile(profile)
    split = split or make_split(scenario, seed, data_dir, profile=profile)
    if scenario == "cf":  # RB's training set: RB's original model, trained once for both
        model, rb, meta = get_original("rb", seed, profile, run_dir, data_dir, device, progress=progress,
                                       train_overrides=train_overrides)
        if rb.train_fingerprint != split.train_fingerprint:
            raise CheckpointMismatch(f"cf seed {seed}: the training set differs from RB's ({split.train_fingerprint[:16]}… "
                                     f"against {rb.train_fingerprint[:16]}…); cannot share RB's original model")
        return model, split, {**meta, "scenario": "cf", "split_fingerprint": split.fingerprint,
                              "train_fingerprint": split.train_fingerprint,
                              "shared_with": f"rb seed {seed}: the same training set"}
    cfg = dataclasses.replace(p.train_for(scenario), **(train_overrides or {}))
    path, expect = _original_key(split, profile, run_dir, cfg, train_overrides)
    hit = _load_if_matching(path, expect, device)
    if hit is not None:
        return hit[0], split, hit[1]
    seed_everything(seed)
    model = build_model("resnet18", split.num_classes, p.width, split.mean, split.std).to(device)
    images = torch.cat([split.retain.images, split.forget.images])
    labels = torch.cat([split.retain.labels, split.forget.labels])
    resume = _resume_file(path, expect["config_hash"])
    t0 = time.perf_counter()
    history = train(model, images, labels, cfg, seed=seed, on_epoch_end=progress, resume=resume)
    # after a resume: the seconds of this session only; compilation is reported apart
    seconds = time.perf_counter() - t0 - history.compile_seconds
    save_checkpoint(path, model, **expect, history=history, seconds=seconds, timing=timing(),
                    compile_seconds=history.compile_seconds, device=device_name(device),
                    precision=precision(device, cfg.fast, cfg.amp))
    resume.unlink(missing_ok=True)
    meta = load_checkpoint(path, expect=expect)[1]
    return model.eval(), split, meta


def stored_seed_files(split, profile: str, run_dir, *, train_overrides: dict | None = None,
                      retrain_overrides: dict | None = None, tag_config: bool = False) -> tuple[Path, Path] | None:
    """The files of ``split``'s original model and Retrain in ``run_dir/checkpoints``, as
    :func:`prepare_seed` writes them (same arguments), when both are there and match this split and
    recipe (metadata, config hashes and checksums verified); else None. Nothing is trained, and a
    probe warns of nothing: whoever then trains the model warns of the stale file it replaces."""
    retrain_overrides = dict(retrain_overrides or {})
    cfg = dataclasses.replace(get_profile(profile).train_for(split.scenario), **(train_overrides or {}))
    path, expect = _original_key(split, profile, run_dir, cfg, train_overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hit = _load_if_matching(path, expect, "cpu")
        if hit is None:
            return None
        chash = _method_hash(method_config("retrain", profile, split.scenario, **retrain_overrides), hit[1])
        tag = f"-{chash[:8]}" if tag_config and retrain_overrides else ""
        rpath = _ckpt(run_dir, f"{split.scenario}-{profile}-seed{split.seed}-retrain{tag}")
        rexpect = _expect(split, profile, method="retrain", config_hash=chash)
        if _load_if_matching(rpath, rexpect, "cpu") is None:
            return None
    return path, rpath


def epoch_printer(what: str):
    """A ``progress(epoch, row)`` callback for :func:`get_original` (or any training loop) that
    prints one line per epoch: ``what``, the epoch, and the row's loss, accuracy and seconds."""
    def show(epoch: int, row: dict) -> None:
        parts = [f"{k} {float(row[k]):.4g}" for k in ("loss", "acc", "seconds") if k in row]
        print(f"{what} epoch {epoch}: " + ", ".join(parts), flush=True)
    return show


def _resume_file(path: Path, chash: str) -> Path:
    """Per-epoch state of an unfinished run (deleted once its checkpoint is written)."""
    return path.with_name(f"{path.stem}-{chash[:8]}.resume.safetensors")


def load_unlearned(method: str, scenario: str, seed: int, profile: str, run_dir, split,
                   device=None, **overrides):
    """A stored unlearned model (or the original, for ``method="original"``), checked against the split."""
    device = device or default_device()
    if method == "original":
        return get_original(scenario, seed, profile, run_dir, split=split, device=device)[0]
    cfg = method_config(method, profile, scenario, **overrides)
    ometa = get_original(scenario, seed, profile, run_dir, split=split, device=device)[2]
    chash = _method_hash(cfg, ometa)
    expect = _expect(split, profile, method=method, config_hash=chash)
    path = _ckpt(run_dir, f"{scenario}-{profile}-seed{seed}-{method}")
    tagged = _ckpt(run_dir, f"{scenario}-{profile}-seed{seed}-{method}-{chash[:8]}")
    if tagged.is_file():  # made by a sweep (tag_config) with this config; the plain name may hold another
        try:
            return load_checkpoint(path, expect=expect, device=device)[0]
        except (CheckpointMismatch, CheckpointDamaged, OSError):
            path = tagged
    return load_checkpoint(path, expect=expect, device=device)[0]


def _method_hash(cfg, origin: dict) -> str:
    """The method's config hash, tied to the original model it starts from (``origin``: the
    original's checkpoint metadata, whose config hash identifies its recipe)."""
    return config_hash({"method": hashable_config(cfg), "original": origin.get("config_hash")})


def run_method(method: str, original, split, profile: str, run_dir, device=None, *, origin: dict,
               tag_config: bool = False, progress=None, **overrides):
    """Unlearn ``original`` (whose checkpoint metadata is ``origin``) with ``method``, or reuse its
    matching checkpoint. Returns ``(model, meta)``. ``tag_config`` puts the config hash in the file
    name, so configurations don't replace each other."""
    device = device or default_device()
    cfg = method_config(method, profile, split.scenario, **overrides)
    chash = _method_hash(cfg, origin)
    expect = _expect(split, profile, method=method, config_hash=chash)
    tag = f"-{chash[:8]}" if tag_config else ""
    path = _ckpt(run_dir, f"{split.scenario}-{profile}-seed{split.seed}-{method}{tag}")
    hit = _load_if_matching(path, expect, device)
    if hit is not None:
        return hit
    resume = _resume_file(path, chash)
    res = unlearn(method, original, split, cfg, resume=resume, on_epoch_end=progress, meta=origin)
    save_checkpoint(path, res.model, **expect, history=res.history, seconds=res.seconds, timing=timing(),
                    compile_seconds=res.compile_seconds, diverged=res.diverged, rewound_epoch=res.rewound_epoch,
                    config=res.config, device=device_name(device),
                    precision=precision(device, cfg.fast, getattr(cfg, "amp", "auto")))
    resume.unlink(missing_ok=True)
    return load_checkpoint(path, expect=expect, device=device)


@dataclass
class SeedModels:
    """One seed's shared models, from :func:`prepare_seed`: the original and its Retrain reference
    with their checkpoint metadata, and how they were made."""
    split: Split
    original: nn.Module
    original_meta: dict
    retrain: nn.Module
    retrain_meta: dict
    retrain_overrides: dict
    tag_config: bool
    # Retrain's (and the original's) outputs and metrics, computed once for every model scored
    # against them (see :func:`~unlearnlib.metrics.evaluate`)
    eval_cache: dict = dataclasses.field(default_factory=dict, repr=False)


def prepare_seed(scenario: str, seed: int, profile: str, run_dir, *, data_dir=None, device=None,
                 train_overrides: dict | None = None, retrain_overrides: dict | None = None,
                 tag_config: bool = False, progress=None) -> SeedModels:
    """The original model and the Retrain reference of one seed, trained or loaded from ``run_dir``.
    The first half of the one runner (original -> Retrain -> method -> evaluate -> row) that
    :func:`run_scenario` and :mod:`unlearnlib.sweep` share; :func:`model_for` and :func:`score`
    are the rest."""
    device = device or default_device()
    original, split, ometa = get_original(scenario, seed, profile, run_dir, data_dir, device,
                                          train_overrides=train_overrides,
                                          progress=None if progress is None else lambda e, r: progress("original", e, r))
    retrain_overrides = dict(retrain_overrides or {})
    # Retrain at the profile's recipe has one file whoever asks (report, sweep, tuning grid)
    ref, rmeta = run_method("retrain", original, split, profile, run_dir, device, origin=ometa,
                            tag_config=tag_config and bool(retrain_overrides),
                            progress=None if progress is None else lambda e, r: progress("retrain", e, r),
                            **retrain_overrides)
    return SeedModels(split, original, ometa, ref, rmeta, retrain_overrides, tag_config)


def model_for(s: SeedModels, method: str, profile: str, run_dir, device=None, *, progress=None, **overrides):
    """``(model, meta)`` of ``method`` on the seed of ``s`` (``"original"`` included), unlearned or
    loaded from its checkpoint. ``progress(epoch, row)`` is called after each epoch of a run."""
    if method == "original":
        return s.original, s.original_meta
    if method == "retrain" and overrides == s.retrain_overrides:
        return s.retrain, s.retrain_meta
    return run_method(method, s.original, s.split, profile, run_dir, device, origin=s.original_meta,
                      tag_config=s.tag_config, progress=progress, **overrides)


def config_hash_for(s: SeedModels, method: str, profile: str, **overrides) -> str:
    """The config hash that ``model_for(s, method, profile, **overrides)`` gives its model, computed
    without running anything (the results store's key)."""
    if method == "original":
        return s.original_meta["config_hash"]
    if method == "retrain" and overrides == s.retrain_overrides:
        return s.retrain_meta["config_hash"]
    return _method_hash(method_config(method, profile, s.split.scenario, **overrides), s.original_meta)


def _timing_text(t: dict | None) -> str:
    if not t:
        return "conditions not recorded"
    return f"{t['threads']} thread(s) in one of {t['processes']} process(es) training at once"


def score(s: SeedModels, model, meta: dict) -> dict:
    """:func:`~unlearnlib.metrics.evaluate` of ``model`` against the seed's Retrain reference, with
    the data source the split's images came from. The cost ratio to Retrain (``cost_ratio``) is
    given only when both were timed under the same conditions (checkpoint ``timing``: threads and
    processes training at once): on a CPU, Retrain trained in one of 3 one-thread workers sharing
    2 cores took 1.7x its time alone (measured, paper-cpu RB: 103 s, mean of seeds 0-2, against
    60.9 s alone for seed 0), so a ratio against it would flatter every method run alone; such rows
    keep ``seconds`` and get ``cost_note`` instead."""
    same = meta.get("timing") == s.retrain_meta.get("timing")
    row = evaluate(model, s.split, reference=s.retrain, original=s.original, seconds=meta.get("seconds"),
                   reference_seconds=s.retrain_meta.get("seconds") if same else None, seed=s.split.seed,
                   meta=meta, cache=s.eval_cache)
    row["timing"] = meta.get("timing")
    if not same:
        row["cost_note"] = (f"Retrain timed with {_timing_text(s.retrain_meta.get('timing'))}, this model "
                            f"with {_timing_text(meta.get('timing'))}: no ratio")
    row["data_source"] = s.split.data_source
    return row


def validate_workers(workers) -> int:
    """``workers`` for :func:`run_scenario`: an integer >= 1, else ValueError naming it."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    return workers


def _work(job: dict) -> dict:
    """Worker process: one job of :func:`_run_pool`, written as checkpoints (no evaluation): the
    seed's original model and Retrain (:func:`prepare_seed`), then, when the job names a method,
    that method with its overrides (:func:`model_for`). Runs the same code as the sequential path.
    Returns the job's seed and method, its wall seconds and, on CUDA, the process's peak GPU memory
    in GiB (else None)."""
    global _PROCESSES
    t0 = time.perf_counter()
    torch.set_num_threads(job["threads"])
    _PROCESSES = job["processes"]
    torch.use_deterministic_algorithms(job["deterministic"])
    torch.backends.cudnn.deterministic = job["cudnn_deterministic"]
    torch.backends.cudnn.benchmark = job["cudnn_benchmark"]
    q, seed, method = job.get("queue"), job["seed"], job.get("method")

    def tell(what, epoch, row=None):
        if q is not None:
            q.put(f"seed {seed} {what} epoch {epoch}")

    s = prepare_seed(job["scenario"], seed, job["profile"], job["run_dir"], data_dir=job["data_dir"],
                     device=job["device"], train_overrides=job["train_overrides"],
                     retrain_overrides=job["retrain_overrides"], tag_config=job["tag_config"], progress=tell)
    if method is not None:
        model_for(s, method, job["profile"], job["run_dir"], job["device"],
                  progress=lambda e, r: tell(method, e), **job["overrides"])
    dev = torch.device(job["device"])
    peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None
    return {"seed": seed, "method": method, "seconds": time.perf_counter() - t0, "peak_gpu_memory_gb": peak}


# what the worker processes of the last pooled call (``run_scenario``, ``tune`` or ``beta_sweep``
# with ``workers > 1``) reported (:func:`_work`'s dicts): ``bench`` reads their peak GPU memory,
# which the driver's own ``torch.cuda.max_memory_allocated`` cannot see
worker_reports: list[dict] = []


def _job(scenario, seed, profile, run_dir, *, data_dir=None, device=None, method=None, overrides=None,
         train_overrides=None, retrain_overrides=None, tag_config=False) -> dict:
    """One :func:`_work` job: the seed's original and Retrain, then ``method`` (None: those two only)."""
    return dict(scenario=scenario, seed=seed, profile=profile, run_dir=str(run_dir), data_dir=data_dir,
                device=str(device or default_device()), method=method, overrides=dict(overrides or {}),
                train_overrides=train_overrides, retrain_overrides=dict(retrain_overrides or {}),
                tag_config=tag_config)


def _run_pool(jobs: list[dict], workers: int, bar=None) -> None:
    """Run the ``jobs`` in up to ``workers`` spawned processes, each with ``threads // workers`` CPU
    threads (at least 1) and the parent's determinism settings, in two stages: first each seed's
    original model and Retrain (one job per seed, so that no two processes train the same model),
    then the methods' jobs. Progress (seed, model, epoch) comes back through a
    queue to ``bar``'s postfix, so a long model never leaves the terminal silent.

    On a CPU, unless the profile pools them (:func:`_pool_methods`), only the first stage runs here;
    the methods then run in this process, with all its threads, as a sequential run does."""
    if not jobs:
        return
    ctx = multiprocessing.get_context("spawn")  # CUDA cannot be forked
    threads = max(1, torch.get_num_threads() // workers)
    common = dict(threads=threads, processes=workers, deterministic=torch.are_deterministic_algorithms_enabled(),
                  cudnn_deterministic=torch.backends.cudnn.deterministic,
                  cudnn_benchmark=torch.backends.cudnn.benchmark)
    seeds: dict = {}
    for j in jobs:  # stage 1: one job per (scenario, seed, recipe)
        key = (j["scenario"], j["seed"], j["profile"], j["run_dir"], repr(j["train_overrides"]),
               repr(sorted(j["retrain_overrides"].items())))
        seeds.setdefault(key, {**j, "method": None, "overrides": {}})
    stages = [list(seeds.values())]
    if _pool_methods(jobs[0]["device"], jobs[0]["profile"]):
        stages.append([j for j in jobs if j["method"] is not None])
    mgr = ctx.Manager()
    queue = mgr.Queue()
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    try:
        for stage in stages:
            futures = {pool.submit(_work, {**job, **common, "queue": queue}):
                       f"seed {job['seed']} " + (job["method"] or "original and Retrain") for job in stage}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=2.0, return_when=FIRST_COMPLETED)
                while not queue.empty():
                    msg = queue.get_nowait()
                    if bar is not None:
                        bar.set_postfix_str(msg)
                for fut in done:
                    try:
                        worker_reports.append(fut.result())
                    except Exception as e:
                        raise RuntimeError(f"{futures[fut]} failed in its worker process: {e!r}") from e
                    if bar is not None:
                        bar.set_postfix_str(f"{futures[fut]} done")
    except BaseException:
        # Ctrl-C, SIGTERM or a failed job: stop the other workers now instead of waiting for them
        # (what they wrote so far is whole: checkpoints are written atomically)
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        mgr.shutdown()
        raise
    pool.shutdown()
    mgr.shutdown()


def _pool_methods(device, profile: str | None = None) -> bool:
    """Whether the methods' jobs go to worker processes too: on a GPU, yes (measured on an NVIDIA
    H200, RB, 3 seeds, 3 workers: 12 methods in 184 s against 7 methods in 205 s with one process per
    seed); on a CPU, where the profile says so (:attr:`~unlearnlib.profiles.Profile.pool_methods_on_cpu`:
    ``quick`` and ``paper-cpu``, whose methods run eager). Not for compiled methods on a CPU: measured
    on this project's 2 CPU cores (paper-cpu RB, 3 one-thread processes, cold inductor cache), 18
    compiled unlearning runs took 15.4 min against 7.8 min in one process, each 3.6-4.7x its
    sequential time: every process compiles its own kernels (per thread count), and the compilers'
    gcc runs took the cores."""
    if torch.device(device).type == "cuda":
        return True
    return profile is not None and get_profile(profile).pool_methods_on_cpu


def _missing(scenario, seeds, profile, run_dir, runs, *, data_dir=None, device=None, retrain_overrides=None,
             train_overrides=None, tag_config=False) -> list[dict]:
    """The :func:`_work` jobs that ``runs`` (``(method, overrides)`` pairs) on ``seeds`` still need:
    one stage-1 job per seed whose original or Retrain is not stored yet, and, where :func:`_pool_methods` sends the
    methods to the workers, every run with no row in the results store and no checkpoint of its
    config. Each seed's split is built once."""
    store = ResultsStore(Path(run_dir) / RESULTS_FILE)
    pooled = _pool_methods(device or default_device(), profile)
    runs = [(m, dict(over or {})) for m, over in runs if m not in ("original", "retrain")]
    out = []
    for seed in seeds:
        base = _job(scenario, seed, profile, run_dir, data_dir=data_dir, device=device,
                    train_overrides=train_overrides, retrain_overrides=retrain_overrides,
                    tag_config=tag_config)
        split = make_split(scenario, seed, data_dir, profile=profile)
        # stage 1 only where the seed's original or Retrain is not stored yet: a pool of processes
        # that would just load them costs their start-up (measured ~10 s per call on 2 cores)
        if stored_seed_files(split, profile, run_dir, train_overrides=train_overrides,
                             retrain_overrides=retrain_overrides, tag_config=tag_config) is None:
            out.append(base)
        if not pooled or not runs:
            continue
        try:
            ometa = _original_meta(split, profile, run_dir, train_overrides)
        except FileNotFoundError:  # not trained yet: every run of the seed is missing
            out += [{**base, "method": m, "overrides": over} for m, over in runs]
            continue
        for m, over in runs:
            chash = _method_hash(method_config(m, profile, scenario, **over), ometa)
            if store.has(scenario=scenario, method=m, seed=seed, config_hash=chash,
                         split_fingerprint=split.fingerprint):
                continue
            tag = f"-{chash[:8]}" if tag_config else ""
            if _load_if_matching(_ckpt(run_dir, f"{scenario}-{profile}-seed{seed}-{m}{tag}"),
                                 _expect(split, profile, method=m, config_hash=chash), "cpu") is not None:
                continue
            out.append({**base, "method": m, "overrides": over})
    return out


def _original_meta(split, profile, run_dir, train_overrides=None) -> dict:
    """The stored original model's checkpoint metadata (FileNotFoundError: none, or not this recipe)."""
    scenario, seed = split.scenario, split.seed
    if scenario == "cf":
        rb = make_split("rb", seed, split.data_dir, profile=profile)
        if rb.train_fingerprint != split.train_fingerprint:
            raise FileNotFoundError(f"cf seed {seed}: training set differs from RB's")
        return _original_meta(rb, profile, run_dir, train_overrides)
    cfg = dataclasses.replace(get_profile(profile).train_for(scenario), **(train_overrides or {}))
    hit = _load_if_matching(*_original_key(split, profile, run_dir, cfg, train_overrides), "cpu")
    if hit is None:
        raise FileNotFoundError(f"no original model for {scenario} seed {seed} in {run_dir}")
    return hit[1]


def run_scenario(scenario: str, seeds, profile: str = "quick", methods=None, run_dir="runs/default",
                 data_dir=None, device=None, overrides: dict | None = None, progress: bool = True,
                 train_overrides: dict | None = None, workers: int = 1, variant: str = "official",
                 tag_config: bool = False) -> list[dict]:
    """Original model, every method and ``evaluate`` for each seed; one stored row per (method, seed).

    Rows already in ``run_dir/results.jsonl`` with the same key are kept and not recomputed.
    ``methods`` defaults to every registered method. ``overrides`` maps a method to its config
    overrides; ``train_overrides`` changes the original models' recipe. ``workers > 1`` trains
    and unlearns up to that many seeds at once in separate processes (each with
    ``threads // workers`` CPU threads), then evaluates in order here: same results as
    ``workers=1`` (see the module's notes). ``variant`` names the rows' settings in the report
    ("official", "tuned", ...); ``tag_config`` keeps each configuration's checkpoint apart.
    Returns exactly the rows of this call (its methods, configs and seeds), each with ``variant``.
    """
    device = device or default_device()
    methods = list(methods or method_names(default_only=True))
    for m in methods:
        get_method(m)  # unknown names fail here, naming the allowed ones
    validate_workers(workers)
    overrides = overrides or {}
    bad = sorted(m for m in overrides if m not in method_names())
    if bad:
        raise ValueError(f"overrides for unknown method(s) {bad}; allowed: {', '.join(method_names())}")
    for m, over in overrides.items():  # names, types and ranges, before any compute
        method_config(m, profile, scenario, **over)
    if train_overrides:
        check_config(dataclasses.replace(get_profile(profile).train_for(scenario), **train_overrides))
    store = ResultsStore(Path(run_dir) / RESULTS_FILE)
    order = ["retrain"] + [m for m in methods if m != "retrain"]
    bar = progress_bar(total=len(seeds) * (len(order) + 1), desc=f"{scenario} {profile} {variant}", disable=not progress)
    worker_reports.clear()
    if workers > 1:
        _run_pool(_missing(scenario, seeds, profile, run_dir, [(m, overrides.get(m)) for m in order],
                           data_dir=data_dir, device=device, retrain_overrides=overrides.get("retrain"),
                           train_overrides=train_overrides, tag_config=tag_config), workers, bar)
    keys = []
    for seed in seeds:
        bar.set_postfix_str(f"seed {seed}: original and Retrain")
        s = prepare_seed(scenario, seed, profile, run_dir, data_dir=data_dir, device=device,
                         train_overrides=train_overrides, retrain_overrides=overrides.get("retrain", {}),
                         tag_config=tag_config,
                         progress=lambda what, e, r, seed=seed: bar.set_postfix_str(f"seed {seed} {what} epoch {e}"))
        bar.update(1)
        for method in ["original"] + order:
            bar.set_postfix_str(f"seed {seed} {method}")
            k = dict(scenario=scenario, method=method, seed=seed,
                     config_hash=config_hash_for(s, method, profile, **overrides.get(method, {})),
                     split_fingerprint=s.split.fingerprint)
            keys.append(k)
            if store.has(**k):  # scored before (by this or another variant): nothing to compute
                bar.update(method != "original")
                continue
            model, meta = model_for(s, method, profile, run_dir, device, **overrides.get(method, {}),
                                    progress=lambda e, r, seed=seed, method=method:
                                    bar.set_postfix_str(f"seed {seed} {method} epoch {e}"))
            assert meta["config_hash"] == k["config_hash"], (meta["config_hash"], k)
            row = score(s, model, meta)
            row.update(k)
            row.update(profile=profile, device=meta.get("device"), precision=meta.get("precision"), git_commit=git_commit(),
                       versions=versions(), history=meta.get("history"),
                       diverged=meta.get("diverged", False), config=meta.get("config"),
                       compile_seconds=meta.get("compile_seconds", 0.0), variant=variant)
            store.append(row)
            bar.update(method != "original")
    bar.close()
    out = []
    for k in keys:
        hit = store.get(**k)
        out.append({**hit[-1], "profile": profile, "variant": variant})
    return out


def stored_rows(scenarios, seeds, profile: str, run_dir, *, methods=None, data_dir=None,
                variant: str = "official") -> list[dict]:
    """The rows of ``run_scenario(scenario, seeds, profile, methods)`` that the results store already
    holds for the current settings (the same keys: split fingerprint and config hash), without
    computing anything; a seed whose original model is not in ``run_dir`` (or whose data set cannot
    be loaded here) gives none. For figures that read the other notebooks' results (notebook 08)."""
    from .data import DataError
    store = ResultsStore(Path(run_dir) / RESULTS_FILE)
    out = []
    for scenario in scenarios:
        for seed in seeds:
            try:
                split = make_split(scenario, seed, data_dir, profile=profile)
            except DataError:
                continue
            try:
                ometa = _original_meta(split, profile, run_dir)
            except FileNotFoundError:
                continue
            for m in ["original"] + list(methods or method_names(default_only=True)):
                chash = ometa["config_hash"] if m == "original" else \
                    _method_hash(method_config(m, profile, scenario), ometa)
                hit = store.get(scenario=scenario, method=m, seed=seed, config_hash=chash,
                                split_fingerprint=split.fingerprint)
                if hit:
                    out.append({**hit[-1], "profile": profile, "variant": variant})
    return out


def tuning_grid(method: str, profile: str, scenario: str) -> list[dict]:
    """The "tuned on validation" grid of ``method`` under ``profile`` (:attr:`Profile.tune`): the
    official learning rate times each of ``lr_factors``, and for the SCRUB family each of the
    scenario's ``max_steps`` values (capped at the epochs). Empty when the profile has no grid, or
    its grid leaves ``method`` out (``tune["methods"]``)."""
    tune = get_profile(profile).tune
    if not tune or get_method(method).train_recipe or method not in tune.get("methods", (method,)):
        return []
    base = method_config(method, profile, scenario)
    lrs = [float(f"{base.lr * f:.6g}") for f in tune.get("lr_factors", {}).get(scenario, (1.0,))]
    steps = [None]
    if get_method(method).family == "scrub":
        steps = sorted({min(m, base.epochs) for m in tune.get("max_steps", {}).get(scenario, (base.max_steps,))})
    return [{"lr": lr, **({} if m is None else {"max_steps": m})} for lr in lrs for m in steps]


def tune(scenario: str, profile: str, run_dir, *, seed: int = 0, methods=None, data_dir=None,
         device=None, progress: bool = True, tolerance: float = RETAIN_TOLERANCE, workers: int = 1) -> dict:
    """Pick each method's settings from :func:`tuning_grid` by the smallest Avg. Gap to Retrain on
    the *validation* set (``avg_gap_val``) of one seed, among the points that did not diverge and
    keep retain accuracy within ``tolerance`` of Retrain's; the reported test set is never read.

    Every grid point is unlearned from the seed's original model (reused from ``run_dir``),
    scored against its Retrain and stored in the results store with ``variant="grid"``.
    Returns ``{method: {"overrides": {...}, "avg_gap_val": ..., "grid": [(overrides, avg_gap_val), ...]}}``
    for the methods that have a grid; where no point qualifies, the official point (the grid's
    first) with ``"fallback": True`` and a warning. ``workers > 1`` unlearns the missing grid points
    in that many processes first (as :func:`run_scenario` does), then scores them here in order."""
    methods = [m for m in (methods or method_names(default_only=True)) if tuning_grid(m, profile, scenario)]
    points = [(m, p) for m in methods for p in tuning_grid(m, profile, scenario)]
    if not points:
        return {}
    validate_workers(workers)
    device = device or default_device()
    if workers > 1:
        _run_pool(_missing(scenario, [seed], profile, run_dir, points, data_dir=data_dir, device=device,
                           tag_config=True), workers)
    store = ResultsStore(Path(run_dir) / RESULTS_FILE)
    bar = progress_bar(points, desc=f"{scenario} {profile} tuning grid (seed {seed})", disable=not progress)
    s = prepare_seed(scenario, seed, profile, run_dir, data_dir=data_dir, device=device, tag_config=True,
                     progress=lambda what, e, r: bar.set_postfix_str(f"{what} epoch {e}"))
    out: dict = {}
    for method, point in bar:
        bar.set_postfix_str(f"{method} {point}")
        k = dict(scenario=scenario, method=method, seed=seed, config_hash=config_hash_for(s, method, profile, **point),
                 split_fingerprint=s.split.fingerprint)
        hit = store.get(**k)
        if hit and "avg_gap_val" in hit[-1]:
            row = hit[-1]
        else:
            model, meta = model_for(s, method, profile, run_dir, device, **point,
                                    progress=lambda e, r: bar.set_postfix_str(f"{method} {point} epoch {e}"))
            row = {**score(s, model, meta), **k, "profile": profile, "variant": "grid", "config": meta.get("config"),
                   "device": meta.get("device"), "precision": meta.get("precision"), "git_commit": git_commit(),
                   "diverged": meta.get("diverged", False)}
            store.append(row)
        gap = float(row["avg_gap_val"])
        out.setdefault(method, {"grid": []})["grid"].append((point, gap))
        if row.get("diverged") or row["gap_retain_acc"] > tolerance:  # never picked (see RETAIN_TOLERANCE)
            continue
        if "avg_gap_val" not in out[method] or gap < out[method]["avg_gap_val"]:
            out[method].update(overrides=dict(point), avg_gap_val=gap)
    for method, c in out.items():
        if "overrides" not in c:  # nothing to choose from: the tuned row repeats the official settings
            point, gap = c["grid"][0]
            c.update(overrides=dict(point), avg_gap_val=gap, fallback=True)
            warnings.warn(f"tuning {method}: every grid point diverged or lost retain accuracy (more than "
                          f"{tolerance:.0%} from Retrain's); its tuned row keeps the official settings {point}",
                          RuntimeWarning, stacklevel=2)
    return out


def run_tuned(scenario: str, seeds, profile: str, run_dir, *, methods=None, data_dir=None, device=None,
              progress: bool = True, tolerance: float = RETAIN_TOLERANCE, workers: int = 1) -> tuple[dict, list[dict]]:
    """The reports' "tuned on validation" rows: :func:`tune` on the smallest of ``seeds`` (validation
    only), then :func:`run_scenario` with each method's pick on every seed (``variant="tuned"``).
    Returns ``(picked, rows)``; ``({}, [])`` where the profile has no grid. ``workers``: as in
    :func:`run_scenario`."""
    seeds = list(seeds)
    picked = tune(scenario, profile, run_dir, seed=min(seeds), methods=methods, data_dir=data_dir, device=device,
                  progress=progress, tolerance=tolerance, workers=workers)
    if not picked:
        return {}, []
    rows = run_scenario(scenario, seeds, profile, methods=list(picked), run_dir=run_dir, data_dir=data_dir,
                        device=device, overrides={m: c["overrides"] for m, c in picked.items()},
                        progress=progress, variant="tuned", tag_config=True, workers=workers)
    return picked, rows


def beta_sweep(scenario: str, seeds, profile: str, run_dir, betas, *, methods=("scrub_attention", "scrub_similarity"),
               data_dir=None, device=None, progress: bool = True, workers: int = 1) -> list[dict]:
    """Rows of the feature SCRUB variants at each ``beta`` (official settings otherwise), scored
    against Retrain, with test and validation figures. At ``beta=0`` the feature term is absent
    and the update is vanilla SCRUB's exactly, so vanilla SCRUB's rows stand for every variant
    there. Stored with ``variant="beta"``; each beta's checkpoints are kept apart. ``workers > 1``
    unlearns every missing (beta, variant, seed) in that many processes first, then scores here."""
    validate_workers(workers)
    if workers > 1:
        # beta 0 is vanilla SCRUB's own (untagged) run; every other beta a tagged run per variant
        jobs = _missing(scenario, seeds, profile, run_dir, [("scrub", {})] if 0.0 in map(float, betas) else [],
                        data_dir=data_dir, device=device)
        jobs += _missing(scenario, seeds, profile, run_dir, [(m, {"beta": float(b)}) for b in betas if float(b) != 0.0
                                                             for m in methods], data_dir=data_dir, device=device,
                         tag_config=True)
        _run_pool(jobs, workers)
    rows = []
    for beta in betas:
        if float(beta) == 0.0:
            got = run_scenario(scenario, seeds, profile, methods=["scrub"], run_dir=run_dir, data_dir=data_dir,
                               device=device, progress=progress)
            rows += [{**r, "method": m, "beta": 0.0, "variant": "beta"} for r in got if r["method"] == "scrub"
                     for m in methods]
            continue
        over = {m: {"beta": float(beta)} for m in methods}
        for r in run_scenario(scenario, seeds, profile, methods=list(methods), run_dir=run_dir, data_dir=data_dir,
                              device=device, overrides=over, progress=progress, variant="beta", tag_config=True):
            if r["method"] in methods:
                rows.append({**r, "beta": float(beta)})
    return rows


def select_beta(rows: list[dict], tolerance: float = RETAIN_TOLERANCE) -> dict:
    """Per feature variant, the beta of :func:`beta_sweep`'s rows with the smallest mean Avg. Gap
    to Retrain on the validation set (``avg_gap_val``), among the betas whose mean retain accuracy is
    within ``tolerance`` of Retrain's (:data:`RETAIN_TOLERANCE`); the test set is not read. Returns
    ``{method: {"beta": ..., "avg_gap_val": ..., "n_seeds": ...}}``."""
    import numpy as np
    by: dict = {}
    for r in rows:
        by.setdefault(r["method"], {}).setdefault(r["beta"], []).append(r)
    out = {}
    for m, d in by.items():
        ok = [b for b in sorted(d) if np.mean([r["gap_retain_acc"] for r in d[b]]) <= tolerance]
        if not ok:
            raise ValueError(f"{m}: no beta keeps retain accuracy within {tolerance} of Retrain's")
        best = min(ok, key=lambda b: np.mean([r["avg_gap_val"] for r in d[b]]))
        out[m] = {"beta": best, "avg_gap_val": float(np.mean([r["avg_gap_val"] for r in d[best]])),
                  "n_seeds": len(d[best])}
    return out


def few_model_forgetting(method: str, scenario: str, seed: int, K: int, profile: str = "quick",
                         run_dir="runs/default", data_dir=None, device=None, delta: float | None = None,
                         **overrides) -> dict:
    """The NeurIPS 2023 challenge's forgetting quality (:mod:`unlearnlib.forgetting`) of ``method``
    on one split: K unlearned models (the same original, model seeds ``1000 * (seed + 1) + k``)
    against K models retrained from scratch (the same seeds). ``method="retrain"`` gives the
    ceiling for this K. The models are not stored; the original is reused from ``run_dir``.
    """
    from .forgetting import DELTA, few_model_score
    if isinstance(K, bool) or not isinstance(K, int) or K < 3:
        raise ValueError(f"K must be an integer >= 3 (models of each kind), got {K!r}")
    delta = DELTA if delta is None else delta
    device = device or default_device()
    cfg = method_config(method, profile, scenario, **overrides)
    rcfg = method_config("retrain", profile, scenario)
    original, split, ometa = get_original(scenario, seed, profile, run_dir, data_dir, device)
    seeds = [1000 * (seed + 1) + k for k in range(K)]
    t0 = time.perf_counter()
    retrained = [unlearn("retrain", original, split, rcfg, seed=s).model for s in seeds]
    # the unlearned models of "retrain" must be other retrainings than the reference ones
    useeds = [s + 500 for s in seeds] if method == "retrain" else seeds
    unlearned = [unlearn(method, original, split, cfg, seed=s).model for s in useeds]
    out = few_model_score(unlearned, retrained, split, delta)
    out.update(method=method, scenario=scenario, seed=seed, profile=profile,
               split_fingerprint=split.fingerprint, config_hash=_method_hash(cfg, ometa),
               seconds=time.perf_counter() - t0, device=device_name(device), git_commit=git_commit())
    return out
