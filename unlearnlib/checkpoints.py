"""Checkpoints as safetensors with metadata, checked against the caller's expectations on load.

Only safetensors files are read: a pickle (or any ``torch.load`` file) offered as a checkpoint
is refused without being unpickled, so it can run no code. Writes are atomic.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch.nn as nn

from .io import atomic_write_bytes, git_commit, versions

__all__ = ["save_checkpoint", "load_checkpoint", "read_metadata", "check_model_split", "CheckpointMismatch"]

REQUIRED = ("arch", "width", "num_classes", "dataset")


class CheckpointMismatch(ValueError):
    """A checkpoint's metadata differs from what the caller expects."""


def save_checkpoint(path, model: nn.Module, **meta) -> Path:
    """Save ``model``'s weights and ``meta`` (arch, width, num_classes, dataset, scenario, seed,
    split_fingerprint, method, ...). Provenance (package versions, git commit) is added."""
    from safetensors.torch import save
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise ValueError(f"checkpoint metadata is missing {missing}; required: {', '.join(REQUIRED)}")
    meta = {**meta, "git_commit": git_commit(), "versions": versions()}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    data = save(tensors, metadata={"unlearnlib": json.dumps(meta, sort_keys=True, default=str)})
    path = Path(path)
    atomic_write_bytes(path, data)
    return path


def read_metadata(path) -> dict:
    """The metadata of a safetensors checkpoint; refuses anything else without unpickling it."""
    from safetensors import safe_open
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        raise ValueError(f"{path} is not a safetensors checkpoint (it may be a pickle / torch.save "
                         f"file). unlearnlib never unpickles checkpoints; convert it with a "
                         f"trusted script to safetensors.")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("unlearnlib")
    except Exception as e:
        raise ValueError(f"{path} is not a readable safetensors checkpoint: {e}") from e
    if raw is None:
        raise ValueError(f"{path} has no unlearnlib metadata")
    return json.loads(raw)


def load_checkpoint(path, expect: dict | None = None, device="cpu") -> tuple[nn.Module, dict]:
    """Build the model described by the checkpoint and load its weights.

    ``expect`` maps metadata keys (dataset, num_classes, split_fingerprint, arch, width, ...) to
    the values the caller needs; any difference raises :class:`CheckpointMismatch` naming both.
    Returns ``(model, meta)``: the metadata travels beside the model, never on it (a copy of a
    model is not the model its metadata describes).
    """
    from safetensors.torch import load_file

    from .models import build_model
    meta = read_metadata(path)
    if expect:
        diffs = {k: (meta.get(k), v) for k, v in expect.items() if meta.get(k) != v}
        if diffs:
            text = "; ".join(f"{k}: checkpoint has {a!r}, this run needs {b!r}" for k, (a, b) in diffs.items())
            raise CheckpointMismatch(f"checkpoint {path} does not fit this run ({text})")
    model = build_model(meta["arch"], meta["num_classes"], meta["width"])
    state = load_file(str(path))
    model.load_state_dict(state)
    return model.to(device).eval(), meta


def check_model_split(meta: dict | None, split, action: str) -> None:
    """Refuse a model whose checkpoint metadata ``meta`` (from :func:`load_checkpoint`) says it
    was made on another split (fingerprint); ``unlearn(..., meta=)`` and ``evaluate(..., meta=)``
    call it."""
    if not meta or not hasattr(split, "fingerprint"):
        return
    if meta.get("split_fingerprint") not in (None, split.fingerprint):
        raise CheckpointMismatch(
            f"refusing {action}: the model's checkpoint was made on split "
            f"{str(meta['split_fingerprint'])[:16]}… ({meta.get('dataset')}, {meta.get('num_classes')} classes, "
            f"seed {meta.get('seed')}), but this split is {split.fingerprint[:16]}… ({split.dataset}, "
            f"{split.num_classes} classes, seed {split.seed})")
