"""Build the data folder a rented GPU gets (``.devdata/``, git-ignored, carried by the device tool).

The device tool takes at most 64 MiB with the working tree, and the two archives the paper study
needs (``cifar10-train.zip`` 44 MB, ``tiny-imagenet-20.zip`` 22.5 MB) do not fit together. So:

* ``tiny-imagenet-20.zip`` is copied as it is (the same file, the same sha256 as ``data.SHA256``);
* ``cifar10-train.zip`` becomes a subset archive: the first ``--per-class`` JPEG files of each
  class (sorted names, the same layout and bytes as the original), enough for the ``paper``
  profile's RB split (500 train + 100 test + 100 validation per class). Its sha256 is written to
  ``cifar10-train-subset.sha256``; ``run_bench.py`` registers it as the expected checksum, so the
  archive is still verified when it is read. RB's splits are therefore drawn from a smaller pool
  than on a CPU run: the same sizes, other images (timing and memory are what the GPU run is for).

Usage: ``python benchmarks/device/make_data.py --data-dir ../shared/data --out .devdata``
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import zipfile
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", required=True, help="folder with the original archives")
    ap.add_argument("--out", default=".devdata")
    ap.add_argument("--per-class", type=int, default=800)
    args = ap.parse_args(argv)
    src, out = Path(args.data_dir), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / "tiny-imagenet-20.zip", out / "tiny-imagenet-20.zip")
    prefix, kept = "cifar10/train/", {}
    with zipfile.ZipFile(src / "cifar10-train.zip") as zin:
        names = sorted(n for n in zin.namelist() if n.startswith(prefix) and not n.endswith("/"))
        for n in names:
            kept.setdefault(n[len(prefix):].split("/")[0], []).append(n)
        tmp = out / "cifar10-train.zip.part"
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zout:
            for cls in sorted(kept):
                for n in kept[cls][: args.per_class]:
                    zi = zipfile.ZipInfo(n, date_time=(2020, 1, 1, 0, 0, 0))  # fixed: same bytes every build
                    zout.writestr(zi, zin.read(n))
    tmp.replace(out / "cifar10-train.zip")
    with open(out / "cifar10-train.zip", "rb") as f:
        sha = hashlib.file_digest(f, "sha256").hexdigest()
    (out / "cifar10-train-subset.sha256").write_text(f"{sha}  cifar10-train.zip\n")
    total = sum(p.stat().st_size for p in out.iterdir())
    print(f"{out}: {len(kept)} CIFAR-10 classes x {args.per_class} images, sha256 {sha[:16]}...; "
          f"{total / 2**20:.1f} MiB in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
