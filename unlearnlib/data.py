"""Data sets as cached uint8 tensors, and batched augmentation on the model's device.

Sources, in order:

1. ``data_dir`` argument, 2. the ``UNLEARNLIB_DATA`` environment variable, 3. a ``shared/data``
folder beside the checkout (``../shared/data``): the offline zip archives, checked against
their known sha256. 4. Otherwise, with internet: torchvision's ``CIFAR10(download=True)``, or
the standard ``tiny-imagenet-200.zip`` (first 20 classes in sorted WordNet-id order).

Each set is decoded once into an ``N x 3 x H x W`` uint8 tensor and cached as safetensors under
``UNLEARNLIB_CACHE`` (default ``~/.cache/unlearnlib``). The cache is written atomically, only
after a full, checksum-verified decode, so a bad archive never poisons it. The cache stores the
sha256 of its payload (images, labels, class names) and every load checks it: a cache damaged on
disk is rebuilt from its source with a warning that names the file, never used.
"""
from __future__ import annotations

import hashlib
import io
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .io import atomic_write_bytes
from .runtime import progress_bar

__all__ = ["DATASETS", "LabelledImages", "load_dataset", "find_data_dir", "cache_dir", "fetch",
           "augment", "to_float", "DataError", "payload_digest"]

# name -> (parts, archive per part, sha256 of archive, folder inside archive, mean, std)
DATASETS = {
    "cifar10": {
        "parts": {"train": ("cifar10-train.zip", "cifar10/train/"),
                  "test": ("cifar10-test.zip", "cifar10/test/")},
        "num_classes": 10, "size": 32,
        "mean": (0.4914, 0.4822, 0.4465), "std": (0.2470, 0.2435, 0.2616),
    },
    "tiny-imagenet-20": {
        "parts": {"train": ("tiny-imagenet-20.zip", "tiny-imagenet-20/train/"),
                  "val": ("tiny-imagenet-20.zip", "tiny-imagenet-20/val/")},
        "num_classes": 20, "size": 64,
        "mean": (0.4802, 0.4481, 0.3975), "std": (0.2770, 0.2691, 0.2821),
    },
}
SHA256 = {
    "cifar10-test.zip": "e5dc125866d1ffdc2b98860fd1d7f5a126d61041b1a59caa7536824b8a7c3aca",
    "cifar10-train.zip": "66772d9f54d33269806b49ef48e7831f8eceb21ba2477dc657860f06bbb3b971",
    "tiny-imagenet-20.zip": "9f54187e14e8ac347f1cb81f943d33d61b97c5c7c0f1968c632908eb032882c6",
}
TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
# The checksum published for tiny-imagenet-200.zip (torchvision-style loaders, avalanche, ...) is an
# MD5, with the archive's size; no sha256 is published, so these two are what a download is checked
# against.
TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
TINY_IMAGENET_BYTES = 248_100_043
CACHE_VERSION = "2"  # 2: the payload's sha256 is stored and checked on every load


class DataError(RuntimeError):
    """A data set could not be found, verified or decoded."""


@dataclass
class LabelledImages:
    """Images (N x 3 x H x W, uint8 or float in [0, 1]) and int64 labels, on one device.
    ``source`` says where a loaded data set came from (archive and checksum, or download)."""
    images: torch.Tensor
    labels: torch.Tensor
    source: str = ""

    def __post_init__(self):
        if self.images.ndim != 4 or self.labels.ndim != 1 or len(self.images) != len(self.labels):
            raise ValueError(f"need images N x C x H x W and labels N, got "
                             f"{tuple(self.images.shape)} and {tuple(self.labels.shape)}")

    def __len__(self):
        return len(self.labels)

    def to(self, device) -> "LabelledImages":
        return LabelledImages(self.images.to(device), self.labels.to(device))

    def subset(self, idx) -> "LabelledImages":
        idx = torch.as_tensor(idx, dtype=torch.long, device=self.labels.device)
        return LabelledImages(self.images[idx], self.labels[idx])


def cache_dir() -> Path:
    return Path(os.environ.get("UNLEARNLIB_CACHE", Path.home() / ".cache" / "unlearnlib"))


def find_data_dir(data_dir=None) -> Path | None:
    """The folder holding the offline archives, or ``None`` (then downloads are used)."""
    if data_dir is not None:
        p = Path(data_dir)
        if not p.is_dir():
            raise DataError(f"data_dir {str(p)!r} is not a folder")
        return p
    if os.environ.get("UNLEARNLIB_DATA"):
        p = Path(os.environ["UNLEARNLIB_DATA"])
        if not p.is_dir():
            raise DataError(f"UNLEARNLIB_DATA={str(p)!r} is not a folder")
        return p
    for base in (Path(__file__).resolve().parents[2], Path.cwd().parent, Path.cwd().parent.parent):
        p = base / "shared" / "data"
        if p.is_dir():
            return p
    return None


_SHA_MEMO: dict[tuple, str] = {}


def _sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        _SHA_MEMO[key] = _file_hash(path, "sha256")
    return _SHA_MEMO[key]


def _file_hash(path: Path, algorithm: str) -> str:
    """Hex digest of a file's bytes (``hashlib.file_digest``, read in chunks)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def _decode_zip(path: Path, prefix: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from PIL import Image
    try:
        with zipfile.ZipFile(path) as zf:
            names = sorted(n for n in zf.namelist() if n.startswith(prefix) and not n.endswith("/"))
            classes = sorted({n[len(prefix):].split("/")[0] for n in names})
            index = {c: i for i, c in enumerate(classes)}
            images, labels = [], []
            for n in names:
                with Image.open(io.BytesIO(zf.read(n))) as im:
                    images.append(np.asarray(im.convert("RGB")))
                labels.append(index[n[len(prefix):].split("/")[0]])
    except (zipfile.BadZipFile, OSError, KeyError) as e:
        raise DataError(f"could not read {path}: {e}. The archive is damaged: delete it and "
                        f"copy or download it again.") from e
    if not names:
        raise DataError(f"{path} holds no images under {prefix!r}")
    return np.stack(images).transpose(0, 3, 1, 2).copy(), np.asarray(labels, np.int64), classes


def fetch(url: str, dest: Path, md5: str, size: int, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` with a progress bar, checked against its published ``md5`` and
    ``size``; a file already at ``dest`` is checked and reused.

    Bytes go to ``dest.part`` first. A run interrupted part-way resumes from there with an HTTP
    range request; where the server ignores the range (a full 200 answer), the download restarts
    from byte 0 instead of appending. Only a complete, verified file is renamed to ``dest``; a
    finished download with the wrong size or checksum is deleted and named in a DataError."""
    import urllib.request
    dest = Path(dest)
    if dest.is_file() and dest.stat().st_size == size and _file_hash(dest, "md5") == md5:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    if have > size:  # not a prefix of this file
        part.unlink()
        have = 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(req, timeout=60) as resp:
        if have and resp.status != 206:  # the server sent the whole file: start again
            have = 0
        with open(part, "ab" if have else "wb") as out, \
                progress_bar(total=size, initial=have, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))
    got_size, got_md5 = part.stat().st_size, _file_hash(part, "md5")
    if got_size != size or got_md5 != md5:
        part.unlink()
        raise DataError(f"download of {url} failed its check: {got_size:,} bytes with md5 {got_md5}, expected "
                        f"{size:,} bytes with md5 {md5}; the partial file was deleted, run again")
    os.replace(part, dest)
    return dest


def _decode_tiny_imagenet(path: Path, part: str, classes: int = 20) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The first ``classes`` classes (sorted WordNet ids, as ``ImageFolder`` numbers them) of the
    standard ``tiny-imagenet-200.zip``, decoded straight from the archive (nothing extracted):
    ``train/<wnid>/images/*.JPEG``, or the ``val`` images labelled by ``val_annotations.txt``."""
    from PIL import Image
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        root = "tiny-imagenet-200/"
        wnids = sorted(z.read(root + "wnids.txt").decode().split())[:classes]
        index = {w: i for i, w in enumerate(wnids)}
        if part == "train":
            items = sorted((n, index[n.split("/")[2]]) for n in names
                           if n.startswith(root + "train/") and n.endswith(".JPEG") and n.split("/")[2] in index)
        else:
            ann = [line.split("\t")[:2] for line in z.read(root + "val/val_annotations.txt").decode().splitlines() if line]
            items = sorted((root + "val/images/" + f, index[w]) for f, w in ann if w in index)
        if not items:
            raise DataError(f"{path} holds no {part} images of its first {classes} classes")
        images = np.stack([np.asarray(Image.open(io.BytesIO(z.read(n))).convert("RGB")) for n, _ in items])
    return images.transpose(0, 3, 1, 2).copy(), np.asarray([y for _, y in items], np.int64), wnids


def _download(name: str, part: str, root: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The online path: torchvision's CIFAR-10, or the standard Tiny-ImageNet-200 zip (downloaded
    once, checked, and decoded for its first 20 classes only)."""
    if name == "cifar10":
        from torchvision.datasets import CIFAR10
        ds = CIFAR10(root=str(root), train=(part == "train"), download=True)
        return ds.data.transpose(0, 3, 1, 2).copy(), np.asarray(ds.targets, np.int64), list(ds.classes)
    path = fetch(TINY_IMAGENET_URL, root / "tiny-imagenet-200.zip", TINY_IMAGENET_MD5, TINY_IMAGENET_BYTES)
    return _decode_tiny_imagenet(path, "train" if part == "train" else "val")


def load_dataset(name: str, part: str, data_dir=None, cache=None) -> tuple[LabelledImages, list[str]]:
    """Load ``part`` of data set ``name`` as uint8 tensors (CPU) plus the class names.

    ``name``: ``"cifar10"`` (parts ``train``, ``test``) or ``"tiny-imagenet-20"`` (``train``,
    ``val``). The first call decodes and caches; later calls read the cache.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    parts = DATASETS[name]["parts"]
    if part not in parts:
        raise ValueError(f"dataset {name!r} has no part {part!r}; allowed: {', '.join(parts)}")
    from safetensors.torch import load_file, save
    archive, prefix = parts[part]
    root = find_data_dir(data_dir)
    cdir = Path(cache) if cache is not None else cache_dir()
    if root is not None:
        path = root / archive
        if not path.is_file():
            raise DataError(f"{archive} not found in {root} (looked for {path}); allowed data "
                            f"sets there: {', '.join(sorted(SHA256))}")
        sha = _sha256(path)
        if sha != SHA256[archive]:
            raise DataError(f"{path} has sha256 {sha[:16]}..., expected {SHA256[archive][:16]}...: "
                            f"the file is corrupted or truncated. Delete it and copy or download "
                            f"it again.")
        key = sha[:16]
        source = f"{archive} (sha256 {key}, offline JPEG copy)" if name == "cifar10" else f"{archive} (sha256 {key})"
    else:
        key = "download"
        source = ("torchvision CIFAR10 download" if name == "cifar10" else "tiny-imagenet-200.zip download")
    cfile = cdir / f"{name}-{part}-{key}-v{CACHE_VERSION}.safetensors"
    if cfile.is_file():
        problem = None
        try:
            from safetensors import safe_open
            with safe_open(str(cfile), framework="pt") as f:
                want = (f.metadata() or {}).get("sha256")
            t = load_file(str(cfile))
            if want is None or payload_digest(t) != want:
                problem = "its payload does not match the sha256 stored with it"
            else:
                classes = t.pop("__classes__").numpy().tobytes().decode().split("\n")
                return LabelledImages(t["images"], t["labels"], source), classes
        except Exception as e:  # unreadable: rebuilt, never trusted
            problem = f"it cannot be read ({type(e).__name__})"
        warnings.warn(f"decoded-data cache {cfile} is damaged ({problem}); rebuilding it from {source}",
                      RuntimeWarning, stacklevel=2)
        cfile.unlink(missing_ok=True)
    if root is not None:
        images, labels, classes = _decode_zip(path, prefix)
    else:
        try:
            images, labels, classes = _download(name, part, cdir / "downloads")
        except Exception as e:
            raise DataError(f"no offline archive for {name!r} (set data_dir or UNLEARNLIB_DATA to "
                            f"a folder with {archive}) and the download failed: {e}") from e
    tensors = {"images": torch.from_numpy(images), "labels": torch.from_numpy(labels),
               "__classes__": torch.frombuffer(bytearray("\n".join(classes).encode()), dtype=torch.uint8)}
    cdir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(cfile, save(tensors, metadata={"dataset": name, "part": part, "source": key,
                                                     "sha256": payload_digest(tensors)}))
    return LabelledImages(tensors["images"], tensors["labels"], source), classes


def payload_digest(tensors: dict) -> str:
    """sha256 over a dict of tensors (names, dtypes, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images to float in [0, 1]; float images pass through."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images.float()


def augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop with zero padding (H/8 pixels) and horizontal flip, batched, on x's device.

    ``x`` is a float batch N x C x H x W; the random draws come from ``generator`` (on the
    same device as ``x``), so an epoch's augmentation is reproducible from the seed.
    """
    n, _, h, w = x.shape
    pad = max(1, h // 8)
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), device=dev, generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), device=dev, generator=generator)
    rows = (torch.arange(h, device=dev)[None, :] + dy[:, None])[:, None, :, None]
    cols = (torch.arange(w, device=dev)[None, :] + dx[:, None])[:, None, None, :]
    batch = torch.arange(n, device=dev)[:, None, None, None]
    chan = torch.arange(x.shape[1], device=dev)[None, :, None, None]
    out = padded[batch, chan, rows, cols]
    flip = torch.rand(n, device=dev, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)
