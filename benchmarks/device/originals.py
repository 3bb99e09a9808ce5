"""The ``paper`` profile's original-model recipe on a rented GPU: for each (scenario, seed,
augment) asked, train the original model and print retain / forget / test accuracy and seconds.
Used to check whether the recipe memorises its training set as the paper's originals do.

Usage (GPU machine, after ``make_data.py``):
``UNLEARNLIB_DATA=.devdata python benchmarks/device/originals.py rb:0:0 rb:0:1 rc:0:0``
(``scenario:seed:augment``).
"""
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_bench  # noqa: E402,F401  (registers the subset archive's checksum)

import torch  # noqa: E402

from unlearnlib.metrics import accuracy  # noqa: E402
from unlearnlib.study import get_original  # noqa: E402

if __name__ == "__main__":
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    profile = "paper"
    args = sys.argv[1:]
    if args and args[0].startswith("--profile="):
        profile, args = args[0].split("=", 1)[1], args[1:]
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args:
            sc, seed, aug = spec.split(":")
            t0 = time.perf_counter()
            m, s, meta = get_original(sc, int(seed), profile, tmp, device=dev,
                                      train_overrides={"augment": bool(int(aug))})
            print(f"{profile} {sc} seed {seed} augment {bool(int(aug))}: retain {accuracy(m, s.retain):.4f} "
                  f"forget {accuracy(m, s.forget):.4f} test {accuracy(m, s.test):.4f} "
                  f"train loss {meta['history'][-1]['loss']:.4f}  {meta['seconds']:.1f} s "
                  f"(wall {time.perf_counter() - t0:.1f} s)", flush=True)
