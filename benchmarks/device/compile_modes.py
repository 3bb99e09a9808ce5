"""Which ``torch.compile`` mode closes the GPU targets of ``bench --check`` (issue 17)? On a rented GPU:

1. training images/s of the paper's ResNet-18 (width 1) at batch 128 and 512 under each mode given
   (``unlearnlib.bench.throughput``: the training loop's own forward, autocast and optimizer);
2. with ``--unlearn MODE ...``: the RB original (seed 0, eager), then Retrain and SCRUB at the paper's
   settings under each of those modes, with their ratio (the ``SCRUB / Retrain <= 0.35`` target;
   at the official batches of 32 and 16 every SCRUB step is small).

Every figure is printed as soon as it is measured, so that a ``timeout`` keeps what finished.

Usage (GPU machine, after ``make_data.py``):
``UNLEARNLIB_DATA=.devdata python benchmarks/device/compile_modes.py off default reduce-overhead --unlearn off reduce-overhead``
"""
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_bench  # noqa: E402,F401  (registers the subset archive's checksum)

import torch  # noqa: E402

from unlearnlib.bench import throughput  # noqa: E402
from unlearnlib.methods import unlearn  # noqa: E402
from unlearnlib.study import get_original, method_config  # noqa: E402

if __name__ == "__main__":
    args = sys.argv[1:]
    modes, unlearn_modes = (args[:args.index("--unlearn")], args[args.index("--unlearn") + 1:]) \
        if "--unlearn" in args else (args, [])
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    steps = 50 if dev.type == "cuda" else 3
    print(f"compile modes on {name}, torch {torch.__version__}", flush=True)
    for mode in modes:
        for b in (128, 512):
            t0 = time.perf_counter()
            ips, csecs = throughput(1.0 if dev.type == "cuda" else 0.125, b, steps, dev, compile=mode)
            print(f"  throughput {mode:27s} batch {b}: {ips:10,.0f} images/s (compile {csecs:5.1f} s, "
                  f"wall {time.perf_counter() - t0:5.1f} s)", flush=True)
    if unlearn_modes:
        profile = "paper" if dev.type == "cuda" else "quick"
        with tempfile.TemporaryDirectory() as tmp:
            original, split, meta = get_original("rb", 0, profile, tmp, device=str(dev))
            print(f"  original (RB seed 0, {profile}, eager): {meta['seconds']:.1f} s", flush=True)
            for mode in unlearn_modes:
                secs = {}
                for m in ("retrain", "scrub"):
                    res = unlearn(m, original, split, method_config(m, profile, "rb", compile=mode))
                    secs[m] = res.seconds
                    print(f"  {m:8s} compile {mode:27s} {res.seconds:7.2f} s (+ {res.compile_seconds:.1f} s "
                          f"compiling)", flush=True)
                print(f"  SCRUB / Retrain under {mode}: {secs['scrub'] / secs['retrain']:.3f}", flush=True)
            if dev.type == "cuda":
                print(f"  peak GPU memory of this process: {torch.cuda.max_memory_allocated(dev) / 2**30:.2f} GB")
