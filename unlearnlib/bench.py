"""Speed benchmark: ``python -m unlearnlib.bench [--profile quick|paper] [--smoke]``.

Prints, for the profile and device:

* training throughput (images/s) of the profile's ResNet-18 at batch 128 and 512;
* each method's wall seconds on the RB split (seed 0) and its ratio to Retrain's;
* the end-to-end time of the study (original models, every method and evaluation for the
  chosen scenarios and seeds; ``--smoke`` runs RB with one seed);
* the device's name and the versions used.

The figures are appended as one JSON line to ``benchmarks/results.jsonl`` (or ``--out``).
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .io import git_commit, versions
from .train import sync


def throughput(width: float, batch: int, steps: int, device, size: int = 32) -> float:
    """Training images/s (forward, backward, SGD step) of ResNet-18 on random 32x32 batches."""
    from .models import build_model
    from .train import autocast, make_optimizer
    dev = torch.device(device)
    m = build_model("resnet18", 10, width).to(dev)
    if dev.type == "cuda":
        m = m.to(memory_format=torch.channels_last)
    opt = make_optimizer(m, 0.1, 0.9, 5e-4)
    x = torch.rand(batch, 3, size, size, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)

    def step():
        with autocast(dev, True):
            loss = F.cross_entropy(m(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for _ in range(3):
        step()
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(dev)
    return batch * steps / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m unlearnlib.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="quick", choices=["quick", "paper"])
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="study seeds (default: profile's)")
    ap.add_argument("--scenarios", nargs="+", default=["rb", "rc"], choices=["rb", "rc"])
    ap.add_argument("--smoke", action="store_true", help="small: few throughput steps, RB, seed 0")
    ap.add_argument("--no-study", action="store_true", help="skip the end-to-end study")
    ap.add_argument("--out", default=None, help="JSON-lines file to append to (default benchmarks/results.jsonl)")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args(argv)

    from .methods import METHODS, unlearn
    from .profiles import get_profile
    from .study import get_original, method_config, run_scenario
    prof = get_profile(args.profile)
    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    fig: dict = {"profile": args.profile, "device": name, "versions": versions(), "git_commit": git_commit(),
                 "smoke": args.smoke}
    print(f"unlearnlib bench: profile {args.profile} on {name}; torch {torch.__version__}")

    steps = 3 if args.smoke else (20 if dev.type == "cpu" else 50)
    fig["images_per_s"] = {}
    for b in (128, 512):
        ips = throughput(prof.width, b, steps, dev)
        fig["images_per_s"][str(b)] = round(ips, 1)
        print(f"  training throughput, width {prof.width}, batch {b}: {ips:,.0f} images/s")

    with tempfile.TemporaryDirectory() as tmp:
        small = {"epochs": 2} if args.smoke else {}  # smoke: 2-epoch original, 1-epoch methods
        original, split, meta = get_original("rb", 0, args.profile, tmp, args.data_dir, str(dev),
                                             train_overrides=small)
        fig["original_seconds"] = round(meta["seconds"], 3)
        print(f"  original model (RB seed 0): {meta['seconds']:.2f} s")
        secs = {}
        for m in ["retrain"] + [m for m in METHODS if m != "retrain"]:
            over = ({"epochs": 2} if m == "retrain" else {"epochs": 1}) if args.smoke else {}
            res = unlearn(m, original, split, method_config(m, args.profile, "rb", **over))
            secs[m] = res.seconds
        fig["method_seconds"] = {m: round(s, 3) for m, s in secs.items()}
        fig["ratio_to_retrain"] = {m: round(s / secs["retrain"], 3) for m, s in secs.items()}
        for m, s in secs.items():
            print(f"  {m:17s} {s:8.2f} s   {s / secs['retrain']:.3f} x Retrain")

        if not args.no_study:
            seeds = [0] if args.smoke else (args.seeds or list(prof.seeds))
            scen = ["rb"] if args.smoke else args.scenarios
            t0 = time.perf_counter()
            for sc in scen:
                run_scenario(sc, seeds, args.profile, run_dir=Path(tmp) / "study", data_dir=args.data_dir,
                             device=str(dev), progress=False)
            sync(dev)
            fig["study"] = {"scenarios": scen, "seeds": seeds, "seconds": round(time.perf_counter() - t0, 2)}
            print(f"  end-to-end study ({'+'.join(scen)}, seeds {seeds}, originals + {len(METHODS)} methods "
                  f"+ evaluation): {fig['study']['seconds']:.1f} s")

    out = Path(args.out or Path(__file__).resolve().parent.parent / "benchmarks" / "results.jsonl")
    from .io import atomic_write_bytes
    old = out.read_bytes() if out.is_file() else b""
    atomic_write_bytes(out, old + (json.dumps(fig, sort_keys=True) + "\n").encode())
    print(f"  appended to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
