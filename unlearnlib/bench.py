"""Speed benchmark: ``python -m unlearnlib.bench [--profile quick|paper|paper-dry] [--compile MODE] [--workers N] [--smoke] [--check]``.

Prints, for the profile and device:

* training throughput (images/s) of the profile's ResNet-18 at batch 128 and 512;
* each method's wall seconds on the RB split (seed 0) and its ratio to Retrain's;
* the end-to-end time of the study (original models, every method and evaluation for the
  chosen scenarios and seeds; ``--smoke`` runs RB with one seed), with ``--workers`` seeds
  trained concurrently;
* with ``--compile``, the seconds spent compiling, apart from the figures above (the study's
  end-to-end time includes them);
* the device's name, the CPU threads and the versions used;
* on a GPU, the peak GPU memory; with ``--check``, one PASS/FAIL line per target of
  :func:`check_lines` (whole study, SCRUB/Retrain time, images/s at batch 512 beside an eager
  fp32 baseline measured in the same process, peak memory), also stored in the record.
  ``--profile paper --check`` needs a CUDA GPU and says so on a CPU, before any compute;
  ``--profile paper-dry`` is its dry run on any device (the same study and methods at full width
  and the paper's image sizes, a few images per class, one epoch per model; on a CPU one untimed and
  one timed throughput step), whose verdicts are all n/a.

The figures are appended as one JSON line to ``benchmarks/results.jsonl`` (or ``--out``), also when a
SIGTERM or Ctrl-C stops the study (``study.finished`` false; its time is then a lower bound).
``--run-dir`` keeps the study's results store and checkpoints. ``benchmarks/device/`` holds the
recipe for a rented GPU (a data subset that fits its upload limit, and this command behind it).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .io import git_commit, versions
from .runtime import sync


def throughput(width: float, batch: int, steps: int, device, size: int = 32,
               compile: str = "off", amp: str = "auto", fast: bool = True, warmup: int = 3) -> tuple[float, float]:
    """Training images/s (forward, backward, SGD step) of ResNet-18 on random 32x32 batches, the
    training loop's own forward (:class:`~unlearnlib.train.Forward`, ``compile`` mode) and
    optimizer; returns ``(images_per_s, compile_seconds)``. ``amp="fp32", fast=False,
    compile="off"`` is the plain eager fp32 baseline of the same step; ``warmup`` untimed steps come first."""
    from .data import LabelledImages, to_float
    from .models import build_model
    from .forward import Forward
    from .runtime import autocast, make_optimizer
    dev = torch.device(device)
    m = build_model("resnet18", 10, width).to(dev)
    if dev.type == "cuda" and fast:
        m = m.to(memory_format=torch.channels_last)
    opt = make_optimizer(m, 0.1, 0.9, 5e-4, fast=fast)
    data = LabelledImages(torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8),
                          torch.randint(0, 10, (batch,))).to(dev)
    x, y = to_float(data.images), data.labels
    with Forward(m, mode=compile) as fwd:
        compile_secs = fwd.warmup(data, {batch}, fast, amp)

        def step():
            with autocast(dev, fast, amp):
                loss = F.cross_entropy(fwd.logits(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        for _ in range(warmup):
            step()
        sync(dev)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync(dev)
        return batch * steps / (time.perf_counter() - t0), compile_secs


# ``--check``'s targets (issue 17): the whole paper study within 5 minutes on an H100-class GPU and
# 30 on a T4; SCRUB at most 0.35x Retrain's time; 60,000 training images/s at batch 512 on an
# H100-class GPU; peak memory within a T4's 15 GB.
STUDY_SECONDS = {"h100": 300.0, "t4": 1800.0}
SCRUB_RATIO = 0.35
H100_IMAGES_PER_S = 60_000.0
PEAK_MEMORY_GB = 15.0


def gpu_class(name: str) -> str:
    """``"h100"`` for H100/H200-class cards (by name), ``"t4"`` for a T4, else ``"other"``."""
    n = name.upper()
    return "h100" if ("H100" in n or "H200" in n or "GH200" in n) else "t4" if "T4" in n else "other"


def check_lines(fig: dict) -> list[dict]:
    """The ``--check`` verdicts of a benchmark record ``fig``: one dict per target with ``name``,
    ``value``, ``target`` (text), ``passed`` (True, False, or None where the target does not apply
    to this device) and ``device``. A ``paper-dry`` record (a dry run: one epoch on a few images) is
    held to no target: every verdict is None."""
    dev, cls = fig["device"], gpu_class(fig["device"])
    dry = fig.get("profile") == "paper-dry"
    out = []

    def line(name, value, target, passed):
        if dry:
            target, passed = f"{target} (not applied: paper-dry is a dry run)", None
        out.append({"name": name, "value": value, "target": target, "passed": passed, "device": dev})

    if "study" in fig:
        limit = STUDY_SECONDS.get(cls)
        secs, finished = fig["study"]["seconds"], fig["study"].get("finished", True)
        passed = None if limit is None else secs <= limit
        if not finished:  # stopped: the time is a lower bound, a FAIL only once it is past the limit
            passed = None if limit is None or secs <= limit else False
        name = "whole study (s)" if finished else "whole study (s; stopped before the end: a lower bound)"
        line(name, secs, f"<= {limit:.0f} s on this GPU class" if limit else
             "<= 300 s (H100 class) / 1800 s (T4); none for this device", passed)
    ratio = fig.get("ratio_to_retrain", {}).get("scrub")
    if ratio is not None:
        line("SCRUB / Retrain time", ratio, f"<= {SCRUB_RATIO}", ratio <= SCRUB_RATIO)
    ips = fig.get("images_per_s", {}).get("512")
    if ips is not None:
        base = fig.get("baseline_images_per_s", {}).get("512")
        speedup = f" ({ips / base:.2f}x the eager fp32 baseline, {base:,.0f} images/s)" if base else ""
        line(f"training images/s, batch 512{speedup}", ips,
             f">= {H100_IMAGES_PER_S:,.0f} (H100 class)" + ("" if cls == "h100" else "; none for this device"),
             ips >= H100_IMAGES_PER_S if cls == "h100" else None)
    mem = fig.get("peak_memory_gb")
    if mem is not None:
        line("peak GPU memory (GB)", mem, f"<= {PEAK_MEMORY_GB} (a T4's memory)", mem <= PEAK_MEMORY_GB)
    return out


def _print_check(lines: list[dict]) -> None:
    for c in lines:
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[c["passed"]]
        value = f"{c['value']:,.3f}" if isinstance(c["value"], float) else str(c["value"])
        print(f"  [{verdict}] {c['name']}: {value}   target {c['target']}   ({c['device']})")


class _StopOnSignal:
    """Within the block, SIGTERM raises KeyboardInterrupt (and records its number), so that a
    study stopped by ``timeout`` or a job scheduler still writes its record and check lines."""
    signum: int | None = None

    def _handler(self, signum, frame):
        self.signum = signum
        raise KeyboardInterrupt

    def __enter__(self):
        import signal
        import threading
        self._old = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._handler)
        return self

    def __exit__(self, *exc):
        import signal
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)
        return False


def _fields(method: str, over: dict) -> dict:
    """The entries of ``over`` that ``method``'s config has (SSD trains nothing: no ``epochs`` and
    no ``compile``)."""
    import dataclasses
    from .methods import get_method
    names = {f.name for f in dataclasses.fields(get_method(method).config)}
    return {k: v for k, v in over.items() if k in names}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m unlearnlib.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="quick", choices=["quick", "paper", "paper-dry"],
                    help="paper-dry: a dry run of paper (full width, the paper's image sizes, a few images per "
                         "class, one epoch per model) that runs on a CPU; its figures are not the targets'")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="study seeds (default: profile's)")
    ap.add_argument("--scenarios", nargs="+", default=["rb", "rc"], choices=["rb", "rc"])
    ap.add_argument("--smoke", action="store_true", help="small: few throughput steps, RB, seed 0")
    ap.add_argument("--no-study", action="store_true", help="skip the end-to-end study")
    ap.add_argument("--compile", default="off", help="torch.compile mode for every training loop: off, "
                    "default, reduce-overhead (CUDA graphs), max-autotune, max-autotune-no-cudagraphs")
    ap.add_argument("--workers", type=int, default=1, help="seeds trained concurrently in the study")
    ap.add_argument("--out", default=None, help="JSON-lines file to append to (default benchmarks/results.jsonl)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--run-dir", default=None,
                    help="keep the study's results store and checkpoints in this folder (default: a temporary one)")
    ap.add_argument("--check", action="store_true",
                    help="the GPU targets: the whole study, SCRUB/Retrain time, images/s at batch 512 (with an "
                         "eager fp32 baseline of the same step) and peak memory, one PASS/FAIL line each; "
                         "with --profile paper it needs a CUDA GPU")
    args = ap.parse_args(argv)
    from .config import COMPILE_MODES
    if args.compile not in COMPILE_MODES:
        ap.error(f"--compile {args.compile!r} is not one of {', '.join(COMPILE_MODES)}")
    if args.workers < 1:
        ap.error(f"--workers must be >= 1, got {args.workers}")

    from .methods import method_names, unlearn
    methods = method_names(default_only=True)  # every method of the report series (opt-in ones only when named)
    from .profiles import get_profile
    from .study import get_original, method_config, run_scenario
    prof = get_profile(args.profile)
    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.check and args.profile == "paper" and dev.type != "cuda":
        print("bench --profile paper --check measures the GPU targets (study time, images/s, peak GPU memory) "
              f"and needs a CUDA GPU; this machine's device is {dev.type!r}. On a CPU, run "
              "`python -m unlearnlib bench --profile paper-dry --check` (the paper study's code path at full "
              "width, a few images per class, one epoch per model) or `--profile quick --check` (the same checks "
              "on the quick profile).")
        return 2
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    fig: dict = {"profile": args.profile, "device": name, "versions": versions(), "git_commit": git_commit(),
                 "smoke": args.smoke, "compile": args.compile, "workers": args.workers,
                 "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    print(f"unlearnlib bench: profile {args.profile} on {name}; torch {torch.__version__}; "
          f"compile {args.compile}; {torch.get_num_threads()} CPU threads of {os.cpu_count()} cores")

    # paper-dry runs the paper study's code path, not its figures: on a CPU, one timed step after one
    # untimed (a full-width step of batch 512 takes ~10 s on 2 cores)
    dry_cpu = args.profile == "paper-dry" and dev.type == "cpu"
    steps = 1 if dry_cpu else 3 if args.smoke else (20 if dev.type == "cpu" else 50)
    warm = 1 if dry_cpu else 3
    fig["images_per_s"], fig["compile_seconds"] = {}, {}
    for b in (128, 512):
        ips, csecs = throughput(prof.width, b, steps, dev, compile=args.compile, warmup=warm)
        fig["images_per_s"][str(b)] = round(ips, 1)
        fig["compile_seconds"][f"throughput_{b}"] = round(csecs, 2)
        extra = f" (compiled in {csecs:.1f} s)" if args.compile != "off" else ""
        print(f"  training throughput, width {prof.width}, batch {b}: {ips:,.0f} images/s{extra}")
    if args.check:  # the plain eager fp32 baseline of the same step, in this process
        ips, _ = throughput(prof.width, 512, steps, dev, compile="off", amp="fp32", fast=False, warmup=warm)
        fig["baseline_images_per_s"] = {"512": round(ips, 1)}
        print(f"  eager fp32 baseline, batch 512: {ips:,.0f} images/s")
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    stop = _StopOnSignal()
    with stop, tempfile.TemporaryDirectory() as tmp:
        comp = {"compile": args.compile} if args.compile != "off" else {}
        small = {"epochs": 2} if args.smoke else {}  # smoke: 2-epoch original, 1-epoch methods
        original, split, meta = get_original("rb", 0, args.profile, tmp, args.data_dir, str(dev),
                                             train_overrides={**small, **comp} or None)
        fig["original_seconds"] = round(meta["seconds"], 3)
        fig["compile_seconds"]["original"] = round(meta.get("compile_seconds", 0.0), 2)
        print(f"  original model (RB seed 0): {meta['seconds']:.2f} s")
        secs = {}
        for m in ["retrain"] + [m for m in methods if m != "retrain"]:
            over = ({"epochs": 2} if m == "retrain" else {"epochs": 1}) if args.smoke else {}
            res = unlearn(m, original, split, method_config(m, args.profile, "rb", **_fields(m, {**over, **comp})))
            secs[m] = res.seconds
            fig["compile_seconds"][m] = round(res.compile_seconds, 2)
        fig["method_seconds"] = {m: round(s, 3) for m, s in secs.items()}
        fig["ratio_to_retrain"] = {m: round(s / secs["retrain"], 3) for m, s in secs.items()}
        for m, s in secs.items():
            extra = f"   (+ {fig['compile_seconds'][m]:.1f} s compiling)" if comp else ""
            print(f"  {m:17s} {s:8.2f} s   {s / secs['retrain']:.3f} x Retrain{extra}")

        if dev.type == "cuda":
            print(f"  peak GPU memory so far: {torch.cuda.max_memory_allocated(dev) / 2**30:.2f} GB", flush=True)

        if not args.no_study:
            seeds = [0] if args.smoke else (args.seeds or list(prof.seeds))
            scen = ["rb"] if args.smoke else args.scenarios
            study_dir = Path(args.run_dir) if args.run_dir else Path(tmp) / "study"
            from . import study as _study
            t0, peaks, done = time.perf_counter(), [], []
            try:  # a SIGTERM (``timeout``, a scheduler) or Ctrl-C stops the study, not the record
                for sc in scen:
                    run_scenario(sc, seeds, args.profile, run_dir=study_dir, data_dir=args.data_dir,
                                 device=str(dev), progress=not args.smoke, workers=args.workers,
                                 train_overrides=comp or None,
                                 overrides={m: _fields(m, comp) for m in methods})
                    peaks += [r["peak_gpu_memory_gb"] for r in _study.worker_reports
                              if r.get("peak_gpu_memory_gb") is not None]
                    done.append(sc)
                    print(f"  study: {sc} done at {time.perf_counter() - t0:.1f} s", flush=True)
                sync(dev)
            except BaseException as e:
                if not (stop.signum or isinstance(e, KeyboardInterrupt)):
                    raise
                print(f"\n  study stopped ({'signal ' + str(stop.signum) if stop.signum else 'interrupted'}) "
                      f"after {time.perf_counter() - t0:.1f} s; scenarios finished: {done or 'none'}", flush=True)
            if peaks:  # the worker processes trained: their peaks, beside the driver's below
                fig["worker_peak_memory_gb"] = round(max(peaks), 2)
            fig["study"] = {"scenarios": scen, "seeds": seeds, "workers": args.workers,
                            "seconds": round(time.perf_counter() - t0, 2), "finished": done == scen,
                            "scenarios_finished": done}
            print(f"  end-to-end study ({'+'.join(scen)}, seeds {seeds}, {args.workers} worker(s), originals + "
                  f"{len(methods)} methods + evaluation{', compilation included' if comp else ''}): "
                  f"{fig['study']['seconds']:.1f} s" + ("" if done == scen else " (stopped before the end)"))

    if dev.type == "cuda":  # the most one process held: this one, or a study worker (--workers)
        driver = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
        fig["peak_memory_gb"] = max(driver, fig.get("worker_peak_memory_gb", 0.0))
        print(f"  peak GPU memory: {fig['peak_memory_gb']:.2f} GB (this process {driver:.2f} GB"
              + (f", study workers {fig['worker_peak_memory_gb']:.2f} GB)" if "worker_peak_memory_gb" in fig else ")"))
    if args.check:
        fig["check"] = check_lines(fig)
        _print_check(fig["check"])
    out = Path(args.out or Path(__file__).resolve().parent.parent / "benchmarks" / "results.jsonl")
    from .io import atomic_write_bytes
    old = out.read_bytes() if out.is_file() else b""
    atomic_write_bytes(out, old + (json.dumps(fig, sort_keys=True) + "\n").encode())
    print(f"  appended to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
